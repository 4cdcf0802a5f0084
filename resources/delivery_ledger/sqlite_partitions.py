"""Partition-wide operations of the SQLite delivery ledger (`resources.delivery_ledger.sqlite.DeliveryLedger`
delegates to them): planning one or many partitions' touches, the partitions of a key range, and cancelling the
touches still planned in some partitions (the hourly cart expiry, `engage_assets.assets.reactive.expiry`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from resources.delivery_ledger.base import HELD_OUT, PAYLOAD_COLUMNS, PLAN_COLUMNS, PlanResult, plan_payload
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


def plan_rows(
    conn: sqlite3.Connection, table: pa.Table, program_id: str, partition_keys: list[str], now: int
) -> PlanResult:
    """Write the plan rows (each in its own `partitionKey`) inside the caller's transaction: insert new touches,
    rewrite those still `planned`, keep those past it, and remove the `partition_keys`' planned touches the plan no
    longer has."""
    inserted = replaced = kept = held = 0
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS plan_keys (touch_key TEXT PRIMARY KEY) WITHOUT ROWID")
    conn.execute("DELETE FROM plan_keys")
    for batch in table.select(list(PLAN_COLUMNS)).to_batches(max_chunksize=5_000):
        params = plan_params_of(batch, program_id, now)
        held += sum(p[12] == "suppressed" for p in params)
        existing = dict(
            chunked_in(conn, "SELECT touch_key, state FROM touches WHERE touch_key IN ({})", [p[0] for p in params])
        )
        states = [existing.get(p[0]) for p in params]
        inserted += states.count(None)
        replaced += states.count("planned")
        kept += len(states) - states.count(None) - states.count("planned")
        conn.executemany("INSERT OR IGNORE INTO plan_keys VALUES (?)", [(p[0],) for p in params])
        conn.executemany(UPSERT_PLANNED, params)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS plan_parts (partition_key TEXT PRIMARY KEY) WITHOUT ROWID")
    conn.executemany("INSERT OR IGNORE INTO plan_parts VALUES (?)", [(k,) for k in partition_keys])
    # One set-based delete for every partition (the touches_partition index finds each partition's rows).
    removed = conn.execute(
        "DELETE FROM touches WHERE program_id = ? AND partition_key IN (SELECT partition_key FROM plan_parts)"
        " AND state = 'planned' AND touch_key NOT IN (SELECT touch_key FROM plan_keys)",
        (program_id,),
    ).rowcount
    conn.execute("DELETE FROM plan_keys")
    conn.execute("DELETE FROM plan_parts")
    return PlanResult(inserted, replaced, removed, kept, held)


UPSERT_PLANNED = (
    "INSERT INTO touches (touch_key, program_id, partition_key, customer_id, subject_id, touch_id,"
    " channel, channel_id, template_id, due_at, expires_at, next_attempt_at, state, reason,"
    " updated_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (touch_key) DO UPDATE SET"
    "   template_id = excluded.template_id, due_at = excluded.due_at,"
    "   expires_at = excluded.expires_at,"
    "   next_attempt_at = CASE WHEN touches.attempts = 0 THEN excluded.next_attempt_at"
    "                          ELSE max(touches.next_attempt_at, excluded.next_attempt_at) END,"
    "   state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at,"
    "   payload = excluded.payload"
    " WHERE touches.state = 'planned'"
)


_PAYLOAD_JSON = json.JSONEncoder(separators=(",", ":")).encode  # what plan_payload's json.dumps writes


def plan_params_of(batch: pa.RecordBatch, program_id: str, now: int) -> list[tuple[Any, ...]]:
    """`plan_params` of every row of the batch, read column by column (no dict per row; the same tuples)."""
    cols = {c: batch.column(c).to_pylist() for c in PLAN_COLUMNS}
    if any(p != program_id for p in cols["programId"]):
        raise ValueError("touch plan row belongs to another program or partition")
    payloads = [
        _PAYLOAD_JSON(dict(zip(PAYLOAD_COLUMNS, v, strict=True)))
        for v in zip(*(cols[c] for c in PAYLOAD_COLUMNS), strict=True)
    ]
    return [
        (
            touch_key,
            program_id,
            partition_key,
            str(customer),
            str(subject),
            str(touch),
            channel,
            channel_id,
            template,
            int(due),
            None if expires is None else int(expires),
            int(due),
            "suppressed" if hold else "planned",
            HELD_OUT if hold else None,
            now,
            payload,
        )
        for touch_key, partition_key, customer, subject, touch, channel, channel_id, template, due, expires, hold, payload in zip(
            cols["touchKey"],
            cols["partitionKey"],
            cols["customerId"],
            cols["subjectId"],
            cols["touchId"],
            cols["channel"],
            cols["channelId"],
            cols["templateId"],
            cols["dueAt"],
            cols["expiresAt"],
            cols["holdout"],
            payloads,
            strict=True,
        )
    ]


def plan_params(r: dict[str, Any], program_id: str, now: int) -> tuple[Any, ...]:
    """A plan row as the touches INSERT's parameters, in its own partition (holdout rows: suppressed/held_out; the
    row must belong to this program)."""
    if r["programId"] != program_id:
        raise ValueError("touch plan row belongs to another program or partition")
    partition_key = r["partitionKey"]
    state, reason = ("suppressed", HELD_OUT) if r["holdout"] else ("planned", None)
    return (
        r["touchKey"],
        program_id,
        partition_key,
        str(r["customerId"]),
        str(r["subjectId"]),
        str(r["touchId"]),
        r["channel"],
        r["channelId"],
        r["templateId"],
        int(r["dueAt"]),
        None if r["expiresAt"] is None else int(r["expiresAt"]),
        int(r["dueAt"]),
        state,
        reason,
        now,
        plan_payload(r),
    )
