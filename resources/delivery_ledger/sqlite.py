"""The delivery ledger: one row per touch, the single source of truth for "was this message sent?".

A touch is keyed by `touchKey` = "{programId}#{customerId}#{subjectId}#{touchId}#{channelId}" and moves through

    planned ──claim──▶ sending ──▶ sent
       ▲  │               │  └────▶ failed       (permanent error, template error, retries exhausted)
       │  ├─▶ suppressed   └───────▶ planned      (transient error / provider outage: attempts+1, next_attempt_at)
       │  └─▶ stale ──▶ planned   (planned send time too long past: never sent; a run told to send stale ones
       │                            plans them again)
       └──── (re-plan of a partition replaces only touches still `planned`; nothing ever leaves `sent`)

A touch is claimed (planned → sending, with a claim token and time) in a committed transaction before the
provider is called, and the provider call carries `idempotency_key(touchKey)`.  Every state change after the claim
is guarded by the claim token, so a process that lost its claim cannot overwrite a newer outcome.

Touches left in `sending` (the process died between the claim and recording the outcome) are "in doubt"; the
engine resolves them with the rule in `engage_assets.delivery.engine` (RECOVERY RULE): provider lookup by
idempotency key, else re-send with the same key.

SQLite in WAL mode with a busy timeout: several delivery runs (processes) share the file; every write is one
statement or one `BEGIN IMMEDIATE` transaction.  The same file holds the contact-pressure data (who was contacted
when, and the suppression list), so a pressure check and the claim it allows commit together.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from resources.delivery_ledger.base import (
    LedgerRow,
    PlanResult,
    check_plan,
)
from resources.delivery_ledger.sqlite_partitions import partition_subjects, plan_rows, suppress_planned
from resources.delivery_ledger.sqlite_sent import LEDGER_COLUMNS, SENT_SCHEMA, SentTouches
from resources.delivery_ledger.sqlite_stale import StaleTouches
from resources.delivery_ledger.sqlite_suppression import SUPPRESSION_SCHEMA, SqliteSuppressionList, migrate
from resources.delivery_ledger.suppression import SuppressionHashes
from resources.sqlite_wal import chunked_in, close_connection, wal_connection, write_transaction

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS touches (
    touch_key       TEXT PRIMARY KEY,
    program_id      TEXT NOT NULL,
    partition_key   TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    touch_id        TEXT NOT NULL,
    channel         TEXT NOT NULL,
    channel_id      TEXT NOT NULL,
    template_id     TEXT,
    due_at          INTEGER NOT NULL,
    expires_at      INTEGER,
    next_attempt_at INTEGER NOT NULL,
    state           TEXT NOT NULL,
    reason          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claim_token     TEXT,
    claimed_at      INTEGER,
    sent_at         INTEGER,
    provider_id     TEXT,
    updated_at      INTEGER NOT NULL,
    payload         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS touches_due ON touches (program_id, next_attempt_at, touch_key) WHERE state = 'planned';
CREATE INDEX IF NOT EXISTS touches_in_doubt ON touches (program_id, claimed_at) WHERE state = 'sending';
CREATE INDEX IF NOT EXISTS touches_partition ON touches (program_id, partition_key, state);
CREATE INDEX IF NOT EXISTS touches_contact ON touches (customer_id, claimed_at) WHERE state IN ('sending', 'sent');
"""
    + SUPPRESSION_SCHEMA
    + SENT_SCHEMA
)  # the suppression list (and the file's schema version): sqlite_suppression

_COLS = LEDGER_COLUMNS


class DeliveryLedger(StaleTouches, SentTouches, SqliteSuppressionList):
    """The ledger file (see the module docstring; the contract is `base.DeliveryLedgerBackend`).  One connection per
    (process, thread), opened lazily; the file migrated to the current schema version on first use.
    `suppression_key`: the suppression list's HMAC key (None: the settings' key, read on first use)."""

    def __init__(
        self, path: str | os.PathLike[str], busy_timeout_ms: int = 60_000, suppression_key: bytes | None = None
    ):
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.hashes = SuppressionHashes(suppression_key)
        self._migrated = False

    # -- connection ------------------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = wal_connection(self.path, self.busy_timeout_ms, SCHEMA)
        if not self._migrated:
            self._migrated = migrate(conn)
        return conn

    def close(self) -> None:
        """Close this thread's connection to the file (other threads' close when their threads end)."""
        close_connection(self.path, SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front, so no deadlock upgrades)."""
        with write_transaction(self._conn()) as conn:
            yield conn

    # -- planning --------------------------------------------------------------------------------------------------
    def plan(self, table: pa.Table, program_id: str, partition_key: str, now: int) -> PlanResult:
        """Insert a partition's touch plan; re-planning replaces only touches still `planned` and never un-sends.

        Holdout rows are recorded as `suppressed` with reason `held_out`.  Planned touches of the partition that
        the new plan no longer contains are removed (the candidate left the audience); touches past `planned` stay.
        """
        check_plan(table)
        if table.num_rows and set(table.column("partitionKey").to_pylist()) != {partition_key}:
            raise ValueError("touch plan row belongs to another program or partition")
        return self._plan(table, program_id, [partition_key], now)

    def plan_partitions(self, table: pa.Table, program_id: str, now: int) -> PlanResult:
        """`plan` for every partition named in the table's `partitionKey` column, in ONE transaction (a reactive
        batch plans one partition per cart: one commit for the batch, not one per cart)."""
        check_plan(table)
        return self._plan(table, program_id, sorted(set(table.column("partitionKey").to_pylist())), now)

    def _plan(self, table: pa.Table, program_id: str, partition_keys: list[str], now: int) -> PlanResult:
        with self.transaction() as conn:
            return plan_rows(conn, table, program_id, partition_keys, now)

    def partition_subjects(self, program_id: str, start: str, end: str) -> dict[str, tuple[str, str]]:
        """{partition_key: (customer_id, subject_id)} of the program's partitions with start <= key < end."""
        return partition_subjects(self._conn(), program_id, start, end)

    def suppress_planned(self, program_id: str, partition_keys: Iterable[str], reason: str, now: int) -> int:
        """The partitions' touches still `planned` → suppressed with `reason`, in one transaction; how many."""
        with self.transaction() as conn:
            return suppress_planned(conn, program_id, partition_keys, reason, now)

    # -- reading ---------------------------------------------------------------------------------------------------
    def due(self, program_id: str, now: int, page_size: int = 500) -> Iterator[list[LedgerRow]]:
        """Pages of touches in `planned` with next_attempt_at <= now, oldest first (keyset paging: memory stays
        one page however many touches are due)."""
        after: tuple[int, str] = (-(2**62), "")
        while True:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_COLS} FROM touches WHERE state = 'planned' AND program_id = ? AND next_attempt_at <= ?"
                    " AND (next_attempt_at, touch_key) > (?, ?) ORDER BY next_attempt_at, touch_key LIMIT ?",
                    (program_id, now, after[0], after[1], page_size),
                )
                .fetchall()
            )
            if not rows:
                return
            page = [LedgerRow(*r) for r in rows]
            after = (page[-1].next_attempt_at, page[-1].touch_key)
            yield page

    def in_doubt(self, program_id: str, claimed_before: int, page_size: int = 500) -> Iterator[list[LedgerRow]]:
        """Pages of touches left in `sending` whose claim is older than `claimed_before` (their process died)."""
        after = ""
        while True:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_COLS} FROM touches WHERE state = 'sending' AND program_id = ? AND claimed_at <= ?"
                    " AND touch_key > ? ORDER BY touch_key LIMIT ?",
                    (program_id, claimed_before, after, page_size),
                )
                .fetchall()
            )
            if not rows:
                return
            page = [LedgerRow(*r) for r in rows]
            after = page[-1].touch_key
            yield page

    def get(self, touch_key: str) -> LedgerRow | None:
        """One touch, or None."""
        row = self._conn().execute(f"SELECT {_COLS} FROM touches WHERE touch_key = ?", (touch_key,)).fetchone()
        return None if row is None else LedgerRow(*row)

    def due_summary(self, program_id: str, now: int) -> tuple[int, int | None]:
        """(number of due touches, latest next_attempt_at among them): what the due-touch sensor keys runs on."""
        n, latest = (
            self._conn()
            .execute(
                "SELECT count(*), max(next_attempt_at) FROM touches WHERE state = 'planned' AND program_id = ?"
                " AND next_attempt_at <= ?",
                (program_id, now),
            )
            .fetchone()
        )
        return int(n), latest

    def next_due_at(self, program_id: str) -> int | None:
        """The earliest next_attempt_at of a planned touch of the program, or None."""
        row = (
            self._conn()
            .execute(
                "SELECT min(next_attempt_at) FROM touches WHERE state = 'planned' AND program_id = ?", (program_id,)
            )
            .fetchone()
        )
        return row[0]

    def counts(self, program_id: str | None = None) -> dict[tuple[str, str, str, str | None], int]:
        """{(programId, channel, state, reason): n} over the whole ledger (or one program)."""
        sql = "SELECT program_id, channel, state, reason, count(*) FROM touches"
        args: tuple[Any, ...] = ()
        if program_id is not None:
            sql += " WHERE program_id = ?"
            args = (program_id,)
        sql += " GROUP BY program_id, channel, state, reason"
        return {(p, c, s, r): n for p, c, s, r, n in self._conn().execute(sql, args)}

    def contacts_since(
        self, conn: sqlite3.Connection, customer_ids: Iterable[str], since: int
    ) -> list[tuple[str, str, str, str, int]]:
        """(customer_id, program_id, subject_id, channel, claimed_at) of touches claimed or sent since `since`."""
        return chunked_in(
            conn,
            "SELECT customer_id, program_id, subject_id, channel, claimed_at FROM touches"
            " WHERE customer_id IN ({}) AND state IN ('sending', 'sent') AND claimed_at >= ?",
            list(dict.fromkeys(customer_ids)),
            tail=(since,),
        )

    def erase_customer(self, customer_id: str) -> int:
        """GDPR erasure: remove every touch of the customer (planned ones never go out; the rest carried their
        offer and personalisation).  A run holding one of them in `sending` finds its mark matches nothing."""
        return self.erase_customers([customer_id])

    def erase_customers(self, customer_ids: Iterable[str]) -> int:
        """`erase_customer` for several customers in one transaction; how many touches were removed."""
        ids, n = list(dict.fromkeys(customer_ids)), 0
        with self.transaction() as conn:
            for i in range(0, len(ids), 900):
                chunk = ids[i : i + 900]
                n += conn.execute(
                    f"DELETE FROM touches WHERE customer_id IN ({', '.join('?' * len(chunk))})", chunk
                ).rowcount
        return n

    # -- transitions (inside a transaction from `transaction()`, or alone) --------------------------------------------
    def _changed_one(self, conn: sqlite3.Connection | None, sql: str, args: tuple[Any, ...]) -> bool:
        """Run one guarded UPDATE: True if it changed the touch (its guard held)."""
        return (conn or self._conn()).execute(sql, args).rowcount == 1

    def claim(self, conn: sqlite3.Connection, touch_key: str, token: str, now: int) -> bool:
        """planned → sending with our token; False if another process got there first."""
        return self._changed_one(
            conn,
            "UPDATE touches SET state = 'sending', claim_token = ?, claimed_at = ?, attempts = attempts + 1,"
            " updated_at = ? WHERE touch_key = ? AND state = 'planned'",
            (token, now, now, touch_key),
        )

    def reclaim(self, touch_key: str, old_token: str | None, token: str, now: int) -> bool:
        """Take over an in-doubt claim (sending with `old_token`) for the recovery rule."""
        return self._changed_one(
            None,
            "UPDATE touches SET claim_token = ?, claimed_at = ?, updated_at = ? WHERE touch_key = ?"
            " AND state = 'sending' AND claim_token IS ?",
            (token, now, now, touch_key, old_token),
        )

    def suppress(
        self, conn: sqlite3.Connection | None, touch_key: str, reason: str, now: int, token: str | None = None
    ) -> bool:
        """planned (or our claimed touch) → suppressed with a reason."""
        args: tuple[str, ...]
        if token is None:
            sql, args = "WHERE touch_key = ? AND state = 'planned'", (touch_key,)
        else:
            sql, args = "WHERE touch_key = ? AND state = 'sending' AND claim_token = ?", (touch_key, token)
        return self._changed_one(
            conn, f"UPDATE touches SET state = 'suppressed', reason = ?, updated_at = ? {sql}", (reason, now, *args)
        )

    def defer(self, conn: sqlite3.Connection | None, touch_key: str, until: int, reason: str, now: int) -> bool:
        """Keep a planned touch planned but not due before `until` (quiet hours, channel outage)."""
        return self._changed_one(
            conn,
            "UPDATE touches SET next_attempt_at = ?, reason = ?, updated_at = ? WHERE touch_key = ?"
            " AND state = 'planned'",
            (until, reason, now, touch_key),
        )

    def mark_sent(self, touch_key: str, token: str, provider_id: str, now: int, reason: str | None = None) -> bool:
        """sending (with our token) → sent."""
        return self._changed_one(None, _MARK_SENT, (provider_id, now, reason, now, touch_key, token))

    def mark_sent_many(self, marks: Iterable[tuple[str, str, str | None]], token: str, now: int) -> int:
        """`mark_sent` for many (touch_key, provider_id, reason) in one transaction; returns how many were marked."""
        with self.transaction() as conn:
            return conn.executemany(
                _MARK_SENT, [(pid, now, reason, now, key, token) for key, pid, reason in marks]
            ).rowcount

    def mark_failed(self, touch_key: str, token: str, reason: str, now: int) -> bool:
        """sending (with our token) → failed."""
        return self._changed_one(
            None,
            "UPDATE touches SET state = 'failed', reason = ?, updated_at = ? WHERE touch_key = ?"
            " AND state = 'sending' AND claim_token = ?",
            (reason, now, touch_key, token),
        )

    def mark_retry(self, touch_key: str, token: str, reason: str, next_attempt_at: int, now: int) -> bool:
        """sending → planned, due again at `next_attempt_at` (transient error or outage; attempts stay counted)."""
        return self._changed_one(
            None,
            "UPDATE touches SET state = 'planned', reason = ?, next_attempt_at = ?, claim_token = NULL,"
            " claimed_at = NULL, updated_at = ? WHERE touch_key = ? AND state = 'sending' AND claim_token = ?",
            (reason, next_attempt_at, now, touch_key, token),
        )


_MARK_SENT = (
    "UPDATE touches SET state = 'sent', provider_id = ?, sent_at = ?, reason = ?, updated_at = ?"
    " WHERE touch_key = ? AND state = 'sending' AND claim_token = ?"
)
