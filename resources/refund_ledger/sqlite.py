"""Refunds, credits and discount codes: what the offers give away, issued once, within the program's budget.

The refund program's `refundStrategy` decides per segment: a full refund (the order's value, in the order's
currency) plus `additionalCredit`, a partial refund (`refundAmount`, added as account credit, as the spec's e-mail
says) or store credit (`creditAmount`).  A segment with `requireApproval: false` (and `autoProcess` not false) is
processed at once (`processed`); with `requireApproval: true` it waits in the approval queue
(`pending_approval` → `approve` → `processed`, or `reject` → `rejected`).

The ledger (SQLite, WAL; `Settings.refund_ledger_path`) holds one row per issuance: program, partition, customer,
subject (the order), kind (refund | credit), amount and currency, the USD value the budget counts, the code, the
state.  Two guarantees, both enforced inside one `BEGIN IMMEDIATE` transaction, so concurrent processes queue:
- never over budget: the partition's committed spend (every state but `rejected`) plus a candidate's cost must fit
  `budget.amount` (USD), or the candidate is refused (`over_budget`) and nothing of it is written;
- idempotent: one issuance per (program, customer, subject, kind); a re-run returns what was issued before.

Discount codes (`discount_codes`): one per (program, customer, subject), 10 characters drawn with `secrets` from
an alphabet without look-alikes (32^10 ≈ 10^15), unique by constraint; a collision draws again.  `issue_codes`
is what templates show as `{discountCode}` (win-back and churn discounts, the refund program's credit codes).
No names, e-mails or phone numbers are stored here, and none appear in errors.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from engage_assets.domain.config import ProgramConfig
from resources.refund_ledger import base
from resources.refund_ledger.base import (
    MAX_CODE_DRAWS,
    PUBLISH_COLUMNS,
    IssueResult,
    Offer,
    candidate_ids,
    candidate_state,
    plan_rows,
    ranked_offers,
    subject_key,
)
from resources.sqlite_wal import close_connection, wal_connection, write_transaction

_CODE_COLUMNS = "t.customer_id, t.subject_id, t.code"

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS issuances (
    issuance_id   TEXT PRIMARY KEY,
    program_id    TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('refund', 'credit')),
    refund_type   TEXT,
    amount        REAL NOT NULL CHECK (amount >= 0),
    currency      TEXT NOT NULL,
    amount_usd    REAL NOT NULL CHECK (amount_usd >= 0),
    code          TEXT,
    state         TEXT NOT NULL CHECK (state IN ('pending_approval', 'processed', 'rejected')),
    created_at    INTEGER NOT NULL,
    decided_at    INTEGER,
    decided_by    TEXT,
    UNIQUE (program_id, customer_id, subject_id, kind)
);
CREATE INDEX IF NOT EXISTS issuances_spend ON issuances (program_id, partition_key, state);
CREATE TABLE IF NOT EXISTS discount_codes (
    code          TEXT PRIMARY KEY,
    program_id    TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    partition_key TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (program_id, customer_id, subject_id)
);
"""
# Version 2: an issuance's event (`resources.refund_events`): published_at is set when the order and billing systems
# acknowledged it; processed rows without it are the outbox, oldest first.
PUBLISHED = """
ALTER TABLE issuances ADD COLUMN published_at INTEGER;
CREATE INDEX IF NOT EXISTS issuances_outbox ON issuances (program_id, created_at, issuance_id)
    WHERE state = 'processed' AND published_at IS NULL;
"""
# Applied in order on open (`resources.sqlite_migrations`, PRAGMA user_version); append, never edit a shipped one.
MIGRATIONS = (SCHEMA_V1, PUBLISHED)


def _by_keys(
    conn: sqlite3.Connection, columns: str, table: str, program_id: str, keys: list[tuple[str, str]]
) -> Iterable[tuple]:
    """`columns` of `table` (aliased t) for these (customer, subject) keys of a program, 400 keys a query: a join
    with the keys, so SQLite looks each one up in the (program, customer, subject) unique index."""
    for i in range(0, len(keys), 400):
        part = keys[i : i + 400]
        values = ", ".join(["(?, ?)"] * len(part))
        yield from conn.execute(
            f"WITH k(c, s) AS (VALUES {values}) SELECT {columns} FROM k JOIN {table} t "
            f"ON t.program_id = ? AND t.customer_id = k.c AND t.subject_id = k.s",
            [*[x for k in part for x in k], program_id],
        )


class RefundLedger:
    """Refunds, credits and codes issued, per program and partition (see the module docstring); satisfies
    `base.RefundLedgerBackend`."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 60_000):
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms

    def conn(self) -> sqlite3.Connection:
        """This process's and thread's connection (WAL, busy timeout, schema applied)."""
        return wal_connection(self.path, self.busy_timeout_ms, "", migrations=MIGRATIONS)

    def close(self) -> None:
        """Close this thread's connection to the file (other threads' close when their threads end)."""
        close_connection(self.path, "", MIGRATIONS)

    # -- refunds and credits ------------------------------------------------------------------------------------------
    def issue(
        self,
        program: ProgramConfig,
        plan: pa.Table | Iterable[Mapping[str, Any]],
        partition_key: str,
        now: int | None = None,
        chunk: int = 500,
    ) -> IssueResult:
        """Issue the refunds and credits of a refund program's candidates (plan rows: one per touch is fine, a
        candidate is issued once), best score first, never past the partition's budget.  Holdout candidates get
        nothing (they are never contacted)."""
        now = int(now if now is not None else time.time())
        offers = ranked_offers(program, plan)  # raises ValueError for a program without a refundStrategy
        result = IssueResult()
        for start in range(0, max(len(offers), 1), chunk):
            self._issue_chunk(program, offers[start : start + chunk], partition_key, now, result)
        result.spent_usd = self.spent_usd(program.programId, partition_key)
        return result

    def _issue_chunk(
        self, program: ProgramConfig, offers: list[Offer], partition_key: str, now: int, result: IssueResult
    ) -> None:
        """One BEGIN IMMEDIATE transaction: the budget check and the inserts of these candidates commit together."""
        pid, budget = program.programId, float(program.budget.amount)
        conn = self.conn()
        with write_transaction(conn):
            spent = self._spent(conn, pid, partition_key)
            for o in offers:
                have = conn.execute(
                    "SELECT COUNT(*) FROM issuances WHERE program_id = ? AND customer_id = ? AND subject_id = ?",
                    (pid, o.customer, o.subject),
                ).fetchone()[0]
                if have:
                    result.already_issued += 1
                    continue
                cost = sum(i.amount_usd for i in o.parts)
                if spent + cost > budget + 1e-9:
                    result.over_budget += 1
                    result.refused.append(subject_key(pid, o.customer, o.subject))
                    continue
                code = self._code(conn, pid, o.customer, o.subject, partition_key, now)
                self._insert(conn, pid, partition_key, o, code, now)
                spent += cost
                if o.approval:
                    result.pending_approval += 1
                else:
                    result.processed += 1

    @staticmethod
    def _insert(conn: sqlite3.Connection, pid: str, partition_key: str, o: Offer, code: str, now: int) -> None:
        """A candidate's issuances: processed now, or queued for approval."""
        state = "pending_approval" if o.approval else "processed"
        conn.executemany(
            "INSERT INTO issuances (issuance_id, program_id, partition_key, customer_id, subject_id, kind, "
            "refund_type, amount, currency, amount_usd, code, state, created_at, decided_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    uuid.uuid4().hex,
                    pid,
                    partition_key,
                    o.customer,
                    o.subject,
                    i.kind,
                    i.refund_type,
                    i.amount,
                    i.currency,
                    i.amount_usd,
                    code if i.kind == "credit" else None,
                    state,
                    now,
                    None if o.approval else now,
                )
                for i in o.parts
            ],
        )

    @staticmethod
    def _spent(conn: sqlite3.Connection, program_id: str, partition_key: str) -> float:
        return float(
            conn.execute(
                "SELECT COALESCE(SUM(amount_usd), 0) FROM issuances WHERE program_id = ? AND partition_key = ? "
                "AND state != 'rejected'",
                (program_id, partition_key),
            ).fetchone()[0]
        )

    def spent_usd(self, program_id: str, partition_key: str) -> float:
        """The partition's committed spend in USD (every state but rejected)."""
        return round(self._spent(self.conn(), program_id, partition_key), 2)

    # -- the approval queue -------------------------------------------------------------------------------------------
    def pending(self, program_id: str, limit: int = 1_000) -> list[dict[str, Any]]:
        """The approval queue, oldest first (ids, amounts and keys: no personal data)."""
        cur = self.conn().execute(
            "SELECT issuance_id, program_id, partition_key, customer_id, subject_id, kind, refund_type, amount, "
            "currency, amount_usd, created_at FROM issuances WHERE program_id = ? AND state = 'pending_approval' "
            "ORDER BY created_at, issuance_id LIMIT ?",
            (program_id, limit),
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=False)) for row in cur.fetchall()]

    def approve(self, issuance_ids: Iterable[str], approver: str, now: int | None = None) -> int:
        """Approve queued issuances (pending_approval → processed); how many were."""
        return self._decide(issuance_ids, "processed", approver, now)

    def reject(self, issuance_ids: Iterable[str], approver: str, now: int | None = None) -> int:
        """Reject queued issuances: their amount no longer counts against the budget."""
        return self._decide(issuance_ids, "rejected", approver, now)

    def _decide(self, issuance_ids: Iterable[str], state: str, approver: str, now: int | None) -> int:
        now = int(now if now is not None else time.time())
        conn = self.conn()
        with write_transaction(conn):
            return sum(
                conn.execute(
                    "UPDATE issuances SET state = ?, decided_at = ?, decided_by = ? WHERE issuance_id = ? "
                    "AND state = 'pending_approval'",
                    (state, now, approver, i),
                ).rowcount
                for i in issuance_ids
            )

    def issued(self, program_id: str, customer_id: str, subject_id: str) -> list[dict[str, Any]]:
        """The candidate's issuances (kind, type, amounts, code, state), by kind."""
        cur = self.conn().execute(
            "SELECT kind, refund_type, amount, currency, amount_usd, code, state FROM issuances WHERE program_id = ? "
            "AND customer_id = ? AND subject_id = ? ORDER BY kind",
            (program_id, customer_id, subject_id),
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=False)) for row in cur.fetchall()]

    def states(self, program_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The state of each (customer, subject)'s issuance, one query per 400 keys: `processed` only when all its
        parts are, `pending_approval` while any part waits; keys never issued are absent."""
        keys = list(dict.fromkeys(keys))
        seen: dict[tuple[str, str], set[str]] = {}
        for c, s, state in _by_keys(self.conn(), "t.customer_id, t.subject_id, t.state", "issuances", program_id, keys):
            seen.setdefault((c, s), set()).add(state)
        return {k: candidate_state(v) for k, v in seen.items()}

    # -- discount codes -----------------------------------------------------------------------------------------------
    def _code(
        self,
        conn: sqlite3.Connection,
        program_id: str,
        customer: str,
        subject: str,
        partition_key: str | None,
        now: int,
    ) -> str:
        return self._codes(conn, program_id, [(customer, subject)], partition_key, now)[(customer, subject)]

    def _codes(
        self,
        conn: sqlite3.Connection,
        program_id: str,
        keys: list[tuple[str, str]],
        partition_key: str | None,
        now: int,
    ) -> dict[tuple[str, str], str]:
        """Inside a write transaction: the code of each key, drawing new ones for keys without (INSERT OR IGNORE
        skips both a key another process issued meanwhile and a code collision; a missing key draws again)."""
        found: dict[tuple[str, str], str] = {}
        todo = list(dict.fromkeys(keys))
        for _ in range(MAX_CODE_DRAWS):
            rows = _by_keys(conn, _CODE_COLUMNS, "discount_codes", program_id, todo)
            found.update({(c, s): code for c, s, code in rows})
            todo = [k for k in todo if k not in found]
            if not todo:
                return found
            conn.executemany(
                "INSERT OR IGNORE INTO discount_codes (code, program_id, customer_id, subject_id, partition_key, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(base.new_code(), program_id, c, s, partition_key, now) for c, s in todo],
            )
        raise RuntimeError(f"could not draw unique discount codes for {len(todo)} candidates")

    def issue_codes(
        self,
        program: ProgramConfig | str,
        rows: pa.Table | Iterable[Mapping[str, Any]],
        partition_key: str | None = None,
        now: int | None = None,
    ) -> dict[str, str]:
        """{subject_key(program, customer, subject): code} for these rows (plan rows, touches or offer rows);
        issued once per candidate, the same code on every later call.  Holdout rows get no code."""
        pid = program if isinstance(program, str) else program.programId
        now = int(now if now is not None else time.time())
        keys = [candidate_ids(r) for r in plan_rows(rows) if not r.get("holdout")]
        if not keys:
            return {}
        conn = self.conn()
        out: dict[str, str] = {}
        for i in range(0, len(keys), 5_000):
            with write_transaction(conn):
                codes = self._codes(conn, pid, keys[i : i + 5_000], partition_key, now)
            out.update({subject_key(pid, c, s): code for (c, s), code in codes.items()})
        return out

    def codes_for(self, program_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Codes already issued (read only)."""
        return {
            (c, s): code
            for c, s, code in _by_keys(
                self.conn(), _CODE_COLUMNS, "discount_codes", program_id, list(dict.fromkeys(keys))
            )
        }

    # -- events to the order and billing systems (`resources.refund_events`) ------------------------------------------
    def unpublished(self, program_id: str, limit: int = 1_000) -> list[dict[str, Any]]:
        """Processed issuances whose event is not acknowledged yet, oldest first (the outbox index)."""
        cur = self.conn().execute(
            f"SELECT issuance_id, {', '.join(PUBLISH_COLUMNS)} FROM issuances WHERE program_id = ? "
            "AND state = 'processed' AND published_at IS NULL ORDER BY created_at, issuance_id LIMIT ?",
            (program_id, limit),
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def mark_published(self, issuance_ids: Iterable[str], now: int | None = None) -> int:
        """issued → published for these processed issuances (an already published one keeps its time)."""
        now = int(now if now is not None else time.time())
        conn = self.conn()
        with write_transaction(conn):
            return sum(
                conn.execute(
                    "UPDATE issuances SET published_at = ? WHERE issuance_id = ? AND state = 'processed' "
                    "AND published_at IS NULL",
                    (now, i),
                ).rowcount
                for i in dict.fromkeys(issuance_ids)
            )
