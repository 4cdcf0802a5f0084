"""SQLite de-duplication store: the embedded default (ENGAGE_ENV=local), one WAL file every consumer shares.

A claim is one `BEGIN IMMEDIATE` transaction: an upsert that takes a key only where it is absent, expired or a stale
pending claim, stamped with a fresh token, then a read of the keys that carry the token.  Two processes claiming
the same key serialise on the write lock, so exactly one gets it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from resources.dedup.base import DONE, PENDING, DedupStore
from resources.sqlite_wal import SqliteFileResource, chunked_in, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedup_keys (
    key        TEXT PRIMARY KEY,
    state      TEXT NOT NULL,      -- pending | done
    token      TEXT NOT NULL,      -- the claim that holds the key
    claimed_at REAL NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

CLAIM = """
INSERT INTO dedup_keys (key, state, token, claimed_at, expires_at) VALUES (?, 'pending', ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    state = 'pending', token = excluded.token, claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
WHERE dedup_keys.expires_at <= excluded.claimed_at
   OR (dedup_keys.state = 'pending' AND dedup_keys.claimed_at <= excluded.claimed_at - ?)
"""


class SqliteDedupStore(SqliteFileResource, DedupStore):
    """Claims in one SQLite file (WAL), safe for many processes and threads; `path` must be a file path."""

    SCHEMA = SCHEMA

    def claim(self, keys: Sequence[str], ttl_s: int, now: float) -> set[str]:
        """Claim the keys nobody holds; the claimed ones come back (see `DedupStore.claim`)."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return set()
        token = uuid.uuid4().hex
        with write_transaction(self._conn()) as conn:
            conn.executemany(CLAIM, [(k, token, now, now + ttl_s, self.lease_s) for k in unique])
            rows = chunked_in(conn, "SELECT key FROM dedup_keys WHERE token = ? AND key IN ({})", unique, head=(token,))
        return {r[0] for r in rows}

    def complete(self, keys: Sequence[str], now: float) -> None:
        """Mark pending claims done."""
        unique = list(dict.fromkeys(keys))
        if unique:
            with write_transaction(self._conn()) as conn:
                chunked_in(
                    conn,
                    "UPDATE dedup_keys SET state = ? WHERE state = ? AND key IN ({})",
                    unique,
                    head=(DONE, PENDING),
                )

    def release(self, keys: Sequence[str]) -> None:
        """Drop pending claims."""
        unique = list(dict.fromkeys(keys))
        if unique:
            with write_transaction(self._conn()) as conn:
                chunked_in(conn, "DELETE FROM dedup_keys WHERE state = ? AND key IN ({})", unique, head=(PENDING,))

    def in_flight(self, keys: Sequence[str], now: float) -> set[str]:
        """Keys held pending by another consumer within the lease."""
        unique = list(dict.fromkeys(keys))
        rows = chunked_in(
            self._conn(),
            "SELECT key FROM dedup_keys WHERE state = ? AND expires_at > ? AND claimed_at > ? AND key IN ({})",
            unique,
            head=(PENDING, now, now - self.lease_s),
        )
        return {r[0] for r in rows}

    def purge_expired(self, now: float) -> int:
        """Physically delete expired keys (SQLite has no TTL sweeper; claims ignore them anyway)."""
        with write_transaction(self._conn()) as conn:
            return conn.execute("DELETE FROM dedup_keys WHERE expires_at <= ?", (now,)).rowcount
