"""Outcomes in one SQLite file (WAL): the embedded default.  Recording is one `INSERT OR IGNORE` on the event id, so
two deliveries of the same report (concurrent or not) record it once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engage_assets.domain.outcomes import Outcome
from resources.outcomes.base import OutcomeStore, TouchRef, outcome_item
from resources.sqlite_wal import SqliteFileResource, chunked_in, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    event_id        TEXT PRIMARY KEY,
    provider_id     TEXT NOT NULL,
    provider        TEXT NOT NULL,
    channel         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    occurred_at     INTEGER NOT NULL,
    detail          TEXT,
    permanent       INTEGER NOT NULL,
    unsubscribe_all INTEGER NOT NULL,
    touch_ref       TEXT,
    program_id      TEXT,
    customer_id     TEXT,
    unmatched       TEXT,
    recorded_at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_provider ON outcomes (provider_id, occurred_at);
CREATE INDEX IF NOT EXISTS outcomes_occurred ON outcomes (occurred_at, event_id);
CREATE INDEX IF NOT EXISTS outcomes_customer ON outcomes (customer_id) WHERE customer_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS opt_outs (
    customer_id TEXT NOT NULL,
    channel     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (customer_id, channel)
) WITHOUT ROWID;
"""

COLUMNS = {  # stored record key -> column
    "eventId": "event_id",
    "providerId": "provider_id",
    "provider": "provider",
    "channel": "channel",
    "kind": "kind",
    "occurredAt": "occurred_at",
    "detail": "detail",
    "permanent": "permanent",
    "unsubscribeAll": "unsubscribe_all",
    "touchRef": "touch_ref",
    "programId": "program_id",
    "customerId": "customer_id",
    "unmatched": "unmatched",
    "recordedAt": "recorded_at",
}
BOOLEANS = ("permanent", "unsubscribeAll")


class SqliteOutcomeStore(SqliteFileResource, OutcomeStore):
    """Outcomes and opt-outs in one SQLite file; `path` must be a file path."""

    SCHEMA = SCHEMA

    def record(self, outcome: Outcome, touch: TouchRef | None, now: int, unmatched: str | None = None) -> bool:
        """Keep the outcome once (INSERT OR IGNORE on its event id)."""
        item = outcome_item(outcome, touch, unmatched, now)
        columns = ", ".join(COLUMNS.values())
        marks = ", ".join("?" for _ in COLUMNS)
        with write_transaction(self._conn()) as conn:
            values = [int(item[k]) if k in BOOLEANS else item[k] for k in COLUMNS]
            return conn.execute(f"INSERT OR IGNORE INTO outcomes ({columns}) VALUES ({marks})", values).rowcount == 1

    def for_provider_id(self, provider_id: str) -> list[dict[str, Any]]:
        """The provider message's outcomes, oldest first."""
        return self._select("provider_id = ?", (provider_id,))

    def between(self, start: int, end: int) -> list[dict[str, Any]]:
        """The outcomes that occurred in [start, end)."""
        return self._select("occurred_at >= ? AND occurred_at < ?", (start, end))

    def _select(self, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(COLUMNS.values())} FROM outcomes WHERE {where} ORDER BY occurred_at, event_id"
        rows = self._conn().execute(sql, args).fetchall()
        out = []
        for row in rows:
            item = dict(zip(COLUMNS, row, strict=True))
            out.append({k: bool(v) if k in BOOLEANS else v for k, v in item.items()})
        return out

    def add_opt_out(self, customer_id: str, channel: str, now: int) -> None:
        """Record the opt-out (the first one's time is kept)."""
        with write_transaction(self._conn()) as conn:
            conn.execute("INSERT OR IGNORE INTO opt_outs VALUES (?, ?, ?)", (customer_id, channel, now))

    def opted_out(self, customer_ids: Iterable[str]) -> dict[str, set[str]]:
        """{customer: channels} of these customers' opt-outs."""
        ids = list(dict.fromkeys(customer_ids))
        out: dict[str, set[str]] = {}
        for customer, channel in chunked_in(
            self._conn(), "SELECT customer_id, channel FROM opt_outs WHERE customer_id IN ({})", ids
        ):
            out.setdefault(customer, set()).add(channel)
        return out

    def erase_customers(self, customer_ids: Iterable[str]) -> int:
        """Remove the customers' outcomes and opt-outs."""
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return 0
        with write_transaction(self._conn()) as conn:
            removed = 0
            for table in ("outcomes", "opt_outs"):
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    marks = ", ".join("?" for _ in chunk)
                    removed += conn.execute(f"DELETE FROM {table} WHERE customer_id IN ({marks})", chunk).rowcount
            return removed
