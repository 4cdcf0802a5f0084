"""The embedded default's refund event log: one append-only SQLite table under ENGAGE_HOME (`refund_events.sqlite`),
one row per event id, so publishing an event again (a retry) never adds a second row."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from resources.refund_events.base import SOURCE, RefundEvent, RefundEventPublisher
from resources.sqlite_wal import SqliteFileResource, write_transaction

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS refund_events (
    event_id     TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    detail_type  TEXT NOT NULL,
    detail       TEXT NOT NULL,
    published_at INTEGER NOT NULL
);
"""


class LocalRefundEventLog(SqliteFileResource, RefundEventPublisher):
    """Issuance events appended to a SQLite file (the order and billing systems of the embedded default read it)."""

    MIGRATIONS = (SCHEMA_V1,)

    def publish(self, events: Sequence[RefundEvent]) -> set[str]:
        """Append each event once (an event id already logged is kept as it was); all are acknowledged."""
        now = int(time.time())
        with write_transaction(self._conn()) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO refund_events (event_id, source, detail_type, detail, published_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(e.event_id, SOURCE, e.detail_type, json.dumps(e.detail, sort_keys=True), now) for e in events],
            )
        return {e.event_id for e in events}

    def events(self) -> list[dict[str, Any]]:
        """The log, in the order events were first published."""
        rows = self._conn().execute(
            "SELECT event_id, detail_type, detail FROM refund_events ORDER BY published_at, rowid"
        )
        return [{"event_id": i, "detail_type": t, "detail": json.loads(d)} for i, t, d in rows]
