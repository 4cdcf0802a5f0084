"""Durable micro-batches of events, between the cart-event sensor (`sensors/cart_events.py`) and the reactive
program's decision stages (`engage_assets.assets.reactive.decisions`).

The sensor drains the event queue; before it deletes (acks) a message, the message is in a batch file:
`<root>/<programId>/<partition>/<batch_id>.jsonl`, one JSON line `{"messageId": ..., "body": ...}` per message.  A
file is written to a temporary name, fsynced, renamed into place and its folder fsynced, so a reader sees a whole
batch or none.  `batch_id` is a hash of the batch's sorted message ids: a batch delivered again (the sensor died
between writing and deleting) gets the same id, the same file and the same run key.

The root is `ENGAGE_HOME/event_batches` (locally and on the code location's volume in production, as the model
registry is).  The run that decides a batch reads it back; a backfill of an hour replays every batch of that hour.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from engage_assets.domain.events.json_text import loads

SUFFIX = ".jsonl"


@dataclass(frozen=True)
class BatchLine:
    """One message of a batch: its queue message id and its body (the event's JSON text)."""

    message_id: str
    body: str


def batch_id_of(message_ids: Iterable[str]) -> str:
    """A batch's id: the first 20 hex digits of the SHA-256 of its sorted message ids (stable under redelivery)."""
    digest = hashlib.sha256("\n".join(sorted(message_ids)).encode()).hexdigest()
    return digest[:20]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EventBatchStore(dg.ConfigurableResource):
    """Batch files under `root` (module docstring)."""

    root: str

    def folder(self, program_id: str, partition: str) -> Path:
        """The folder of one program's batches of one partition."""
        return Path(self.root) / program_id / partition

    def path(self, program_id: str, partition: str, batch_id: str) -> Path:
        """Where one batch lives."""
        return self.folder(program_id, partition) / f"{batch_id}{SUFFIX}"

    def write(self, program_id: str, partition: str, lines: Sequence[BatchLine]) -> str:
        """Write one batch durably (temp file, fsync, rename, fsync the folder); its id.  Writing a batch that
        exists already leaves it as it is (same id, same messages)."""
        batch_id = batch_id_of(line.message_id for line in lines)
        final = self.path(program_id, partition, batch_id)
        if final.exists():
            return batch_id
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps({"messageId": line.message_id, "body": line.body}, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return batch_id

    def batch_ids(self, program_id: str, partition: str) -> list[str]:
        """Every stored batch of the partition, sorted."""
        folder = self.folder(program_id, partition)
        if not folder.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith("."))

    def read(self, program_id: str, partition: str, batch_id: str) -> list[BatchLine]:
        """One batch's messages, in the order written; FileNotFoundError for a batch never written."""
        with self.path(program_id, partition, batch_id).open(encoding="utf-8") as f:
            rows = [loads(line) for line in f if line.strip()]  # json.loads' values, pydantic-core's speed
        return [BatchLine(str(r["messageId"]), str(r["body"])) for r in rows]
