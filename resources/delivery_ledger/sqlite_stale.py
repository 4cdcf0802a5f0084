"""The `stale` transitions of the SQLite delivery ledger (a base of `resources.delivery_ledger.sqlite.DeliveryLedger`).

planned → stale: the engine found the touch's planned send time further in the past than its program allows
(`delivery.staleAfterHours`); it is never sent.  stale → planned: a delivery run told to send stale touches
(`send_stale`) plans the program's stale touches again, due at once.  Neither leaves a touch that was ever claimed.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager


class StaleTouches:
    """`mark_stale` and `reopen_stale` over the ledger's `touches` table (the ledger provides the connection)."""

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError  # the ledger's own

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # the ledger's own

    def mark_stale(self, conn: sqlite3.Connection | None, touch_key: str, reason: str, now: int) -> bool:
        """planned → stale with a reason: its planned send time is too long past (never sent)."""
        return (conn or self._conn()).execute(
            "UPDATE touches SET state = 'stale', reason = ?, updated_at = ? WHERE touch_key = ? AND state = 'planned'",
            (reason, now, touch_key),
        ).rowcount == 1

    def reopen_stale(self, program_id: str, now: int) -> int:
        """Every `stale` touch of the program → planned, due at `now`, in one transaction; how many."""
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE touches SET state = 'planned', reason = NULL, next_attempt_at = ?, updated_at = ?"
                " WHERE program_id = ? AND state = 'stale'",
                (now, now, program_id),
            ).rowcount
