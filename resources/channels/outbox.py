"""SMS and push locally: a durable SQLite outbox per channel, readable with any SQLite client."""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from resources.channels.base import ChannelSession, DeliveryChannel, OutboundMessage
from resources.sqlite_wal import retry_locked

_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    idempotency_key TEXT PRIMARY KEY,
    program_id      TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    to_address      TEXT,
    title           TEXT,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    received        INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
"""


class OutboxChannel(DeliveryChannel, ABC):
    """A durable local outbox: `<root>/<channel>.sqlite`, one row per idempotency key (a second send with the same
    key only bumps `received`), readable with any SQLite client."""

    root: str
    rate_per_s: float = 10_000.0
    burst: int = 1_000
    channel_name: str = "sms"

    def open(self) -> OutboxSession:
        """A session on the channel's outbox file (created on first use)."""
        return OutboxSession(Path(self.root) / f"{self.channel_name}.sqlite")

    def erase_customers(
        self, customer_ids: Collection[str], contacts: Callable[[], Mapping[str, Mapping[str, Any]]]
    ) -> int:
        """Delete the outbox's messages to these customers (GDPR); returns the rows removed."""
        path = Path(self.root) / f"{self.channel_name}.sqlite"
        ids = sorted({str(c) for c in customer_ids})
        if not ids or not path.exists():
            return 0
        session = OutboxSession(path)
        try:
            removed = 0
            for i in range(0, len(ids), 900):
                chunk = ids[i : i + 900]
                sql = f"DELETE FROM messages WHERE customer_id IN ({', '.join('?' * len(chunk))})"
                removed += session.conn.execute(sql, chunk).rowcount  # the connection waits out a writer's lock
            return removed
        finally:
            session.close()


class OutboxSmsChannel(OutboxChannel):
    """The local SMS outbox (`<root>/sms.sqlite`)."""

    channel_name: str = "sms"


class OutboxPushChannel(OutboxChannel):
    """The local push outbox (`<root>/push.sqlite`)."""

    channel_name: str = "push"


class OutboxSession(ChannelSession):
    """One connection to an outbox file, shared by the session's sends under a lock."""

    dedupes_by_key = True

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 60000")
        retry_locked(lambda: self.conn.execute("PRAGMA journal_mode = WAL"), 60_000)  # see resources.sqlite_wal
        self.conn.execute("PRAGMA synchronous = NORMAL")
        retry_locked(lambda: self.conn.executescript(_OUTBOX_SCHEMA), 60_000)
        self._lock = threading.Lock()

    def send(self, message: OutboundMessage) -> str:
        """Insert the message (a repeat of its key only bumps `received`)."""
        with self._lock:
            self.conn.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (idempotency_key) DO UPDATE SET received = received + 1",
                (
                    message.idempotency_key,
                    message.program_id,
                    message.customer_id,
                    message.to,
                    message.subject,
                    message.text,
                    message.now,
                ),
            )
        return f"outbox:{message.idempotency_key}"

    def lookup(self, message: OutboundMessage) -> str | None:
        """The outbox id of the message with this key, if the outbox holds it."""
        row = self.conn.execute(
            "SELECT 1 FROM messages WHERE idempotency_key = ?", (message.idempotency_key,)
        ).fetchone()
        return f"outbox:{message.idempotency_key}" if row else None

    def close(self) -> None:
        """Close the outbox connection."""
        self.conn.close()
