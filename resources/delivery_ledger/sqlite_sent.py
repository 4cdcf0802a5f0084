"""What the SQLite delivery ledger says about sent touches (a base of `resources.delivery_ledger.sqlite.DeliveryLedger`).

- `sent_touches`: the program's touches in `sent` whose partition key lies in a range: what the platform's own
  contact history is written from (`engage_assets.assets.history`).
- `find_sent`: the sent touch a provider's message id belongs to (an outcome webhook names only that id), through
  the partial index `touches_provider`.
"""

from __future__ import annotations

import sqlite3

from resources.delivery_ledger.base import LedgerRow

SENT_SCHEMA = """
CREATE INDEX IF NOT EXISTS touches_provider ON touches (provider_id) WHERE provider_id IS NOT NULL;
"""

LEDGER_COLUMNS = (  # a LedgerRow's fields, in order
    "touch_key, program_id, partition_key, customer_id, subject_id, touch_id, channel, channel_id, template_id, "
    "due_at, expires_at, next_attempt_at, state, reason, attempts, claim_token, claimed_at, sent_at, "
    "provider_id, payload"
)


class SentTouches:
    """`sent_touches` and `find_sent` over the ledger's `touches` table (the ledger provides the connection)."""

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError  # the ledger's own

    def sent_touches(self, program_id: str, start: str, end: str) -> list[LedgerRow]:
        """The program's sent touches with start <= partition_key < end, by partition and touch key."""
        rows = (
            self._conn()
            .execute(
                f"SELECT {LEDGER_COLUMNS} FROM touches WHERE program_id = ? AND partition_key >= ? AND partition_key < ?"
                " AND state = 'sent' ORDER BY partition_key, touch_key",
                (program_id, start, end),
            )
            .fetchall()
        )
        return [LedgerRow(*r) for r in rows]

    def find_sent(self, provider_id: str) -> LedgerRow | None:
        """The sent touch whose provider message id is `provider_id`, or None."""
        row = (
            self._conn()
            .execute(
                f"SELECT {LEDGER_COLUMNS} FROM touches WHERE provider_id = ? AND state = 'sent' ORDER BY touch_key LIMIT 1",
                (provider_id,),
            )
            .fetchone()
        )
        return None if row is None else LedgerRow(*row)
