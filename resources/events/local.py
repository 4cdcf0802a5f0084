"""The embedded event source: a durable queue in one SQLite file (WAL), shared by several processes (the sensor's
and the serving API's ingest), with SQS's semantics (`resources.events.base`).

A message is one row of `messages`; it is visible when `visible_at` <= now.  A receive is one write transaction
(`BEGIN IMMEDIATE`, so two receivers queue instead of both taking a message): one indexed query for the oldest
visible rows, then each row is hidden until now + the visibility timeout, its receive count raised and a fresh
receipt written (`<seq>.<random token>`: the row's key, so deleting by receipt needs no second index, and a token no
earlier receive of the row had).  Rows already received `max_receive_count` times move to `dead_letters` instead
(reason `max_receives`).  Sends and deletes are one transaction per batch.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
import uuid

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

from resources.events.base import MAX_RECEIVES, EventSource, Message, SendResult, check_reason
from resources.sqlite_wal import SqliteFileResource, write_transaction
from resources.warehouse.base import until_deadline

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY,
    message_id    TEXT NOT NULL,
    body          TEXT NOT NULL,
    sent_at       REAL NOT NULL,
    visible_at    REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (visible_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq           INTEGER PRIMARY KEY,
    message_id    TEXT NOT NULL,
    body          TEXT NOT NULL,
    sent_at       REAL NOT NULL,
    receive_count INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    dead_at       REAL NOT NULL
);
"""

_Row = tuple[int, str, str, float, int]  # seq, message_id, body, sent_at, receive_count


def parse_receipt(receipt_handle: str) -> int:
    """The row a receipt names (`<seq>.<token>`); ValueError for anything this queue never handed out."""
    seq, dot, token = receipt_handle.partition(".")
    if not (dot and token and seq.isdigit()):
        raise ValueError("not a receipt handle of a local event queue")
    return int(seq)


class LocalEventQueue(SqliteFileResource, EventSource):
    """A durable queue in a SQLite file (WAL): visibility timeouts, receive counts, redrive to a dead-letter table,
    delete by receipt.  Safe for several processes and threads (a connection per process and thread)."""

    SCHEMA = SCHEMA
    visibility_timeout_s: int = 30
    max_receive_count: int = 5

    def send(self, bodies: list[str]) -> list[SendResult]:
        """Insert every body in one transaction; each gets a new message id."""
        now = time.time()
        ids = [uuid.uuid4().hex for _ in bodies]
        with write_transaction(self._conn()) as conn:
            conn.executemany(
                "INSERT INTO messages (message_id, body, sent_at, visible_at) VALUES (?, ?, ?, ?)",
                [(mid, body, now, now) for mid, body in zip(ids, bodies, strict=True)],
            )
        return [SendResult(message_id=mid) for mid in ids]

    def receive(self, max_messages: int, visibility_timeout_s: int | None = None, wait_s: float = 0) -> list[Message]:
        """The oldest visible messages, hidden for the timeout; polls the file until `wait_s` when none is visible."""
        if max_messages <= 0:
            return []
        timeout = self.visibility_timeout_s if visibility_timeout_s is None else visibility_timeout_s
        if wait_s <= 0:
            return self._receive_once(max_messages, timeout)
        retrying = Retrying(
            stop=stop_after_delay(wait_s),
            wait=until_deadline(wait_exponential(multiplier=0.01, max=0.2), wait_s),
            retry=retry_if_result(lambda got: not got),
            retry_error_callback=lambda state: [],
        )
        return retrying(self._receive_once, max_messages, timeout)

    def _receive_once(self, max_messages: int, timeout_s: int) -> list[Message]:
        out: list[Message] = []
        with write_transaction(self._conn()) as conn:
            while len(out) < max_messages:
                now = time.time()
                rows: list[_Row] = conn.execute(
                    "SELECT seq, message_id, body, sent_at, receive_count FROM messages WHERE visible_at <= ? "
                    "ORDER BY visible_at LIMIT ?",
                    (now, max_messages - len(out)),
                ).fetchall()
                dead = [r for r in rows if r[4] >= self.max_receive_count]
                live = [r for r in rows if r[4] < self.max_receive_count]
                self._bury(conn, dead, MAX_RECEIVES, now)
                out += self._hide(conn, live, now + timeout_s)
                if not dead:  # every visible row came (or none was left): one query in the common case
                    break
        return out

    @staticmethod
    def _hide(conn: sqlite3.Connection, rows: list[_Row], visible_at: float) -> list[Message]:
        messages = [
            Message(
                message_id=mid,
                receipt_handle=f"{seq}.{secrets.token_urlsafe(12)}",
                body=body,
                receive_count=count + 1,
                sent_at=sent_at,
            )
            for seq, mid, body, sent_at, count in rows
        ]
        conn.executemany(
            "UPDATE messages SET receive_count = receive_count + 1, visible_at = ?, receipt = ? WHERE seq = ?",
            [(visible_at, m.receipt_handle, r[0]) for m, r in zip(messages, rows, strict=True)],
        )
        return messages

    @staticmethod
    def _bury(conn: sqlite3.Connection, rows: list[_Row], reason: str, now: float) -> None:
        if not rows:
            return
        conn.executemany(
            "INSERT INTO dead_letters (message_id, body, sent_at, receive_count, reason, dead_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(mid, body, sent_at, count, reason, now) for _, mid, body, sent_at, count in rows],
        )
        conn.executemany("DELETE FROM messages WHERE seq = ?", [(r[0],) for r in rows])

    def delete(self, receipt_handles: list[str]) -> None:
        """Delete, in one transaction, the rows whose current receipt these are (stale receipts match nothing)."""
        if not receipt_handles:
            return
        keys = [(parse_receipt(r), r) for r in receipt_handles]
        with write_transaction(self._conn()) as conn:
            conn.executemany("DELETE FROM messages WHERE seq = ? AND receipt = ?", keys)

    def change_visibility(self, receipt_handle: str, timeout_s: int) -> bool:
        """Hide the row for `timeout_s` from now, if the receipt still holds it."""
        with write_transaction(self._conn()) as conn:
            cur = conn.execute(
                "UPDATE messages SET visible_at = ? WHERE seq = ? AND receipt = ?",
                (time.time() + timeout_s, parse_receipt(receipt_handle), receipt_handle),
            )
        return cur.rowcount == 1

    def quarantine(self, message: Message, reason: str) -> None:
        """Move the row to the dead letters with `reason`, in one transaction (nothing if the receipt is stale)."""
        check_reason(reason)
        seq = parse_receipt(message.receipt_handle)
        with write_transaction(self._conn()) as conn:
            rows: list[_Row] = conn.execute(
                "SELECT seq, message_id, body, sent_at, receive_count FROM messages WHERE seq = ? AND receipt = ?",
                (seq, message.receipt_handle),
            ).fetchall()
            self._bury(conn, rows, reason, time.time())

    def dead_letters(self, limit: int) -> list[Message]:
        """The oldest dead letters first; they are read, not received, so their receipt handle is empty."""
        rows = self._conn().execute(
            "SELECT message_id, body, receive_count, sent_at, reason FROM dead_letters ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            Message(message_id=mid, receipt_handle="", body=body, receive_count=count, sent_at=sent, reason=reason)
            for mid, body, count, sent, reason in rows
        ]

    def dead_letter_count(self) -> int:
        """Rows in the dead-letter table."""
        return int(self._conn().execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

    def approximate_depth(self) -> int:
        """Rows in the queue (visible and in flight); exact here."""
        return int(self._conn().execute("SELECT COUNT(*) FROM messages").fetchone()[0])
