"""The SQLite candidate store's chunked partition write: chunks staged off the live table, one short swap.

A partition's records arrive a chunk at a time (`SqliteCandidateStore.partition_write`).  Each chunk is staged in
a TEMP table of the write's own connection: the temp database is private to the connection, so staging takes no
lock on the store file, writes nothing to its WAL and invalidates no reader's page cache, however long the batch
takes.  `commit` then replaces the partition in ONE transaction (`INSERT ... SELECT` from the stage in key order,
with the upsert's "newer partition wins" rule, then the stale rows' delete), all in SQLite's C code: readers see the
partition before or after, never half-replaced, as with `replace_partition`.

Issue 14 (a write must not stall the serving API's readers; WAL readers never wait on it, what they feel is the
CPU it takes on a small machine):
- The write's SQLite work (building the rows, staging, the swap, the checkpoint) runs in a thread of its own, with
  its own connection, at a lower CPU priority than the process (`WRITE_NICENESS`, Linux: a thread's nice value is
  its own): the serving processes keep their share of the cores while a batch writes.  The thread and its
  connection end with the write.
- A partition written in one chunk (the store stage's batch is 65,536 rows) skips the stage: its rows wait until
  the commit, which upserts them in key order in the swap transaction (a second chunk stages both).
- The swap's page cache is sized to the partition (`swap_cache_kib`): a large swap into a large store inserted
  into the score-ordered indexes at random through a 64 MiB cache, re-reading evicted pages (250,000 rows into a
  1,000,000-row store: 7.9 s of swap with 64 MiB, 3.7 s with 256 MiB, measured on a loaded machine).
- The swap's WAL frames are copied into the database file by one PASSIVE checkpoint after the commit (it never
  waits on a reader; frames a reader still needs wait for the next checkpoint): the connection's automatic
  checkpoint is off.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from resources.sqlite_wal import write_transaction
from resources.store.base import PartitionWrite, Record, WriteResult, resolve_now, validate_records
from resources.store.sqlite_schema import (
    COLUMNS,
    COUNT_PARTITION,
    DELETE_STALE,
    NEWER_WINS,
    UPDATE_ON_CONFLICT,
    upsert_rows,
)

STAGE_SCHEMA = """
CREATE TEMP TABLE {name} (
    pk TEXT PRIMARY KEY, customer_id TEXT, program_id TEXT, partition_key TEXT, segment TEXT, offer_type TEXT,
    score REAL, expires_at INTEGER, created_at TEXT, gsi1pk TEXT, gsi2pk TEXT, gsi2sk TEXT, write_id TEXT, body TEXT,
    churn_reason TEXT
)
"""
# The swap's two steps.  First, a re-run's rows whose index columns hold what the store holds (same partition, score,
# index keys: a re-materialized partition) are rewritten in place with only the unindexed columns set, so none of
# the six indexes is touched (SQLite updates an index only when the SET list names one of its columns).  Then the
# upsert writes the others (`write_id IS NOT`: not the rows the first step wrote), with the newer-partition rule.
# `ORDER BY pk`: the rows reach the table and its key index in key order (the stage's own key index gives them
# sorted, no sort step), so the key index's pages are written one after another instead of at random.
KEYS_HELD = (
    "candidates.partition_key = {s}partition_key AND candidates.score IS {s}score AND candidates.gsi1pk IS {s}gsi1pk"
    " AND candidates.gsi2pk IS {s}gsi2pk AND candidates.gsi2sk IS {s}gsi2sk AND candidates.churn_reason IS {s}churn_reason"
)
REWRITE_SET = (
    "segment = {s}segment, offer_type = {s}offer_type, expires_at = {s}expires_at, created_at = {s}created_at,"
)
REWRITE_SET += " write_id = {s}write_id, body = {s}body"
# INDEXED BY / `+s.pk`: the stage drives, each row found by key (the planner would otherwise scan the store).
REWRITE_STAGED = (
    f"UPDATE candidates INDEXED BY sqlite_autoindex_candidates_1 SET {REWRITE_SET.format(s='s.')}"
    f" FROM {{name}} AS s WHERE candidates.pk = +s.pk AND {KEYS_HELD.format(s='s.')}"
)
# Numbered parameters (`?3`: the row's third value, COLUMNS' order): the rows bind as the tuples they are.
REWRITE_DIRECT = re.sub(
    r":(\w+)",
    lambda m: f"?{COLUMNS.split(', ').index(m.group(1)) + 1}",
    f"UPDATE candidates SET {REWRITE_SET.format(s=':')} WHERE candidates.pk = :pk AND {KEYS_HELD.format(s=':')}",
)
SWAP_ON_CONFLICT = UPDATE_ON_CONFLICT.replace(
    f"WHERE {NEWER_WINS}", f"WHERE ({NEWER_WINS}) AND candidates.write_id IS NOT excluded.write_id"
)
SWAP = f"INSERT INTO candidates ({COLUMNS}) SELECT {COLUMNS} FROM {{name}} ORDER BY pk{SWAP_ON_CONFLICT}"
SWAP_DIRECT = f"INSERT INTO candidates ({COLUMNS}) VALUES ({', '.join('?' * 15)}){SWAP_ON_CONFLICT}"
WRITE_NICENESS = 10  # added to the write thread's nice value (0: the caller's priority)
SWAP_CACHE_KIB = (32_768, 262_144)  # the swap's page cache, 1 KiB per staged row within these bounds
T = TypeVar("T")


def swap_cache_kib(staged: int) -> int:
    """The swap connection's page cache in KiB for `staged` rows: 1 KiB a row, 32 MiB at least, 256 MiB at most
    (32: the 10M bench's run peaked 21 MB over its 1,000 MB bound in this stage with 64; its 52,000-row write took as long)."""
    low, high = SWAP_CACHE_KIB
    return max(low, min(high, staged))


def lower_thread_priority(niceness: int) -> bool:
    """Add `niceness` to the calling thread's nice value (Linux only: there a thread's priority is its own; elsewhere
    `setpriority` would name a process); whether it was lowered."""
    if niceness <= 0 or sys.platform != "linux":
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except OSError:  # a sandbox may refuse it: the write still runs, at the caller's priority
        return False
    return True


class SqliteStagedWrite(PartitionWrite):
    """See the module docstring.  `connect` opens the store's connection for the calling thread (it is called in the
    write's own thread), `disconnect` closes it (called there too, when the write ends)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        disconnect: Callable[[], None],
        program_id: str,
        partition_key: str,
        now: float | None = None,
        niceness: int = WRITE_NICENESS,
    ):
        validate_records(program_id, partition_key, [])  # the keys themselves, before anything is staged
        self.program_id, self.partition_key = program_id, partition_key
        self.now = resolve_now(now)
        self.write_id = uuid.uuid4().hex
        self.name = f"temp.stage_{self.write_id}"
        self.duplicates = 0  # within a chunk; a customer re-added in a later chunk is counted at commit
        self.added = 0
        self.first = True
        self.pending: list[tuple[Any, ...]] | None = None  # the first chunk's rows, staged when a second one comes
        self._disconnect = disconnect
        self._thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="store-write", initializer=lower_thread_priority, initargs=(niceness,)
        )
        self.open = True
        try:
            self.conn = self._run(connect)
            self._run(self._create_stage)
        except BaseException:
            self.open = False
            try:
                self._run(disconnect)
            finally:
                self._thread.shutdown(wait=True)
            raise

    def _run(self, step: Callable[[], T]) -> T:
        """Run `step` in the write's thread and wait for it (its exception raised here)."""
        return self._thread.submit(step).result()

    def _create_stage(self) -> None:
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")  # this connection's own: one checkpoint after the swap
        self.conn.execute(STAGE_SCHEMA.format(name=self.name))

    def add(self, records: Sequence[Record]) -> None:
        """Stage a chunk: validated as `replace_partition` validates; a customer staged again replaces its row."""
        self._check_open()
        self._run(lambda: self._stage(records))

    def _stage(self, records: Sequence[Record]) -> None:
        unique, dropped = validate_records(self.program_id, self.partition_key, records)
        self.duplicates += dropped
        self.added += len(unique)
        rows = upsert_rows(unique, self.program_id, self.partition_key, self.write_id, self.now)
        if self.pending is not None:  # a second chunk: the first one is staged after all
            self._insert_stage(self.pending)
            self.pending = None
        elif self.first:  # held: if it is the only chunk, the swap upserts it directly, with no stage
            self.first, self.pending = False, rows
            return
        self._insert_stage(rows)

    def _insert_stage(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.execute("BEGIN")  # deferred, and it writes the temp database only: no lock on the store file
        try:
            sql = f"INSERT OR REPLACE INTO {self.name} VALUES ({', '.join('?' * 15)})"
            self.conn.executemany(sql, [row[:-1] for row in rows])  # without `now`, the upsert's parameter
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def commit(self) -> WriteResult:
        """The swap: one transaction, then a passive checkpoint."""
        self._check_open()
        try:
            return self._run(self._swap)
        finally:
            self._end()

    def _swap(self) -> WriteResult:
        result = WriteResult(batches=1)
        # One chunk: its rows in key order, upserted without a stage.
        direct: list[tuple[Any, ...]] = sorted(self.pending or (), key=lambda row: row[0])
        staged = len(direct) or int(self.conn.execute(f"SELECT count(*) FROM {self.name}").fetchone()[0])
        self.conn.execute(f"PRAGMA cache_size = -{swap_cache_kib(staged)}")
        with write_transaction(self.conn) as conn:
            held = conn.execute(COUNT_PARTITION, (self.program_id, self.partition_key)).fetchone()[0]
            # Only a re-run finds rows to rewrite in place (a row is rewritten only within its own partition); and
            # when every row was, nothing is left to upsert.
            if direct:
                # A row's last value, `now`, is the upsert's: the rewrite binds the others.
                written = conn.executemany(REWRITE_DIRECT, [row[:-1] for row in direct]).rowcount if held else 0
                if written < len(direct):
                    written += conn.executemany(SWAP_DIRECT, direct).rowcount
            elif staged:
                written = conn.execute(REWRITE_STAGED.format(name=self.name)).rowcount if held else 0
                if written < staged:
                    written += conn.execute(SWAP.format(name=self.name), (self.now,)).rowcount
            else:
                written = 0
            in_partition = conn.execute(COUNT_PARTITION, (self.program_id, self.partition_key)).fetchone()[0]
            if in_partition > written:
                result.deleted = conn.execute(
                    DELETE_STALE, (self.program_id, self.partition_key, self.write_id)
                ).rowcount
        result.written, result.skipped_newer = written, staged - written
        checkpoint_passive(self.conn)
        duplicates = self.duplicates + self.added - staged
        if duplicates:
            result.extra["duplicates_dropped"] = duplicates
        return result

    def abort(self) -> None:
        if self.open:
            self._end()

    def _end(self) -> None:
        """Close the write's connection (its stage with it) and end its thread."""
        self.open = False

        try:
            self._run(self._disconnect)  # the stage is a TEMP table: it ends with the connection (no DROP to pay)
        finally:
            self._thread.shutdown(wait=True)

    def _check_open(self) -> None:
        if not self.open:
            raise RuntimeError("this partition write was committed or aborted already")


def checkpoint_passive(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Copy the WAL's frames into the database file without waiting on anyone (PASSIVE: frames a reader still needs
    stay for the next checkpoint); (busy, WAL frames, frames checkpointed)."""
    busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(log), int(done)
