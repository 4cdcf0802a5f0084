"""`engage events`: put events into the environment's event queue, and read its counts.

    engage events put [FILE]    PutEvents entries from FILE (or stdin, `-`): {"Entries": [...]}, a JSON list of
                                entries, or one entry per line; prints the per-entry results (the PutEvents response)
    engage events stats         the queue's depth and its dead-letter count, as JSON

The entries are checked as `POST /v1/events` checks them (`engage_assets.serving.ingest`), in PutEvents-sized
batches (10 entries, 256 KiB); a batch that is over the limits alone (one entry over 256 KiB) fails its entries with
`ValidationException`.  Exit status: 0 when every entry was accepted, 1 when any failed, 2 when the input is not
entries (nothing is sent then).  Results carry ids and error codes, never an event's values.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engage_assets.domain.events import PutEventsRequestError, entry_size
from engage_assets.domain.events.envelope import MAX_ENTRIES, MAX_REQUEST_BYTES
from engage_assets.serving import ingest
from engage_assets.settings import get_settings
from resources.events.base import EventSource
from resources.events.batching import pack


def parse_entries(text: str) -> list[dict[str, Any]]:
    """The entries of the input: a `{"Entries": [...]}` request, a JSON list, one object, or one object per line.
    ValueError naming what is wrong (a line number, an entry index, never a value)."""
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError:
        doc = parse_lines(text)
    if isinstance(doc, dict):
        doc = doc["Entries"] if "Entries" in doc else [doc]
    if not isinstance(doc, list) or not doc:
        raise ValueError('expected PutEvents entries: {"Entries": [...]}, a JSON list, or one entry per line')
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise ValueError(f"entry {i} is a JSON {type(entry).__name__}, not an object")
    return doc


def parse_lines(text: str) -> list[Any]:
    """One JSON value per non-blank line; ValueError with the line number of the first that is not JSON."""
    values = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"line {n} is not JSON ({e.msg} at column {e.colno})") from None
    return values


def put_all(source: EventSource, entries: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Every entry through `ingest`, in PutEvents-sized batches; one PutEvents response over all, in input order."""
    results: list[dict[str, str]] = []
    for batch in pack(entries, MAX_ENTRIES, MAX_REQUEST_BYTES, entry_size):
        chunk = [entry for _, entry in batch]
        try:
            results += ingest.put_events(source, chunk, now)["Entries"]
        except PutEventsRequestError as e:
            results += [ingest.failure(e.code, str(e))] * len(chunk)
    return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


def read_input(name: str) -> str:
    """The text of FILE, or of stdin for `-`."""
    return sys.stdin.read() if name == "-" else Path(name).read_text()


def event_queue() -> EventSource:
    """The environment's event source (imported here: `resources.by_env` loads every backend)."""
    from resources.by_env import event_source

    return event_source(get_settings())


def cmd_put(args: argparse.Namespace) -> int:
    """`engage events put`: check and enqueue the entries, print the results; 1 if any failed, 2 on bad input."""
    try:
        entries = parse_entries(read_input(args.file))
    except (OSError, ValueError) as e:
        print(f"engage events put: {e}", file=sys.stderr)
        return 2
    response = put_all(event_queue(), entries, datetime.now(UTC))
    print(json.dumps(response, indent=2))
    return 1 if response["FailedEntryCount"] else 0


def cmd_stats(_args: argparse.Namespace) -> int:
    """`engage events stats`: the queue's depth (visible and in flight) and its dead-letter count."""
    source = event_queue()
    print(json.dumps({"queueDepth": source.approximate_depth(), "deadLetters": source.dead_letter_count()}))
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `engage events put|stats` on the `engage` command's subparsers."""
    events = sub.add_parser("events", help="put events into the event queue; its depth and dead letters")
    commands = events.add_subparsers(dest="events_cmd", required=True)
    put = commands.add_parser("put", help="PutEvents entries (JSON) from a file or stdin; prints per-entry results")
    put.add_argument("file", nargs="?", default="-", help="a JSON file (default: stdin)")
    put.set_defaults(fn=cmd_put)
    stats = commands.add_parser("stats", help="queue depth and dead-letter count, as JSON")
    stats.set_defaults(fn=cmd_stats)
