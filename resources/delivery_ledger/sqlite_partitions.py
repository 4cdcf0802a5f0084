"""Partition-wide operations of the SQLite delivery ledger (`resources.delivery_ledger.sqlite.DeliveryLedger`
delegates to them): the partitions of a key range, and cancelling the touches still planned in some partitions
(the hourly cart expiry, `engage_assets.assets.reactive.expiry`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from resources.sqlite_wal import chunked_in


def partition_subjects(conn: sqlite3.Connection, program_id: str, start: str, end: str) -> dict[str, tuple[str, str]]:
    """{partition_key: (customer_id, subject_id)} of the program's partitions with start <= key < end (the
    `touches_partition` index's range)."""
    rows = conn.execute(
        "SELECT partition_key, customer_id, subject_id FROM touches WHERE program_id = ? AND partition_key >= ?"
        " AND partition_key < ? ORDER BY partition_key, touch_key",
        (program_id, start, end),
    )
    out: dict[str, tuple[str, str]] = {}
    for part, customer, subject in rows:
        out.setdefault(part, (customer, subject))
    return out


def suppress_planned(
    conn: sqlite3.Connection, program_id: str, partition_keys: Iterable[str], reason: str, now: int
) -> int:
    """planned → suppressed with `reason` for the partitions' touches (inside the caller's transaction); how many."""
    return len(
        chunked_in(
            conn,
            "UPDATE touches SET state = 'suppressed', reason = ?, updated_at = ?"
            " WHERE program_id = ? AND state = 'planned' AND partition_key IN ({}) RETURNING touch_key",
            list(dict.fromkeys(partition_keys)),
            head=(reason, now, program_id),
        )
    )
