"""The SQLite ledger's suppression list (a base of `resources.delivery_ledger.sqlite.DeliveryLedger`) and the
ledger file's schema version.

Version 2 (`PRAGMA user_version = 2`): the list is `suppression_keyed` (channel, HMAC-SHA256 of the address under
the deployment's key).  A version-1 file (no user_version; its list `suppression_list` held plain SHA-256 hashes) is
migrated when a ledger first opens it: in one write transaction, `suppression_list` is renamed
`suppression_legacy` and the version set to 2; each legacy entry is then re-keyed the first time its address is
looked up (`resources.delivery_ledger.suppression`, MIGRATION).  `ledger_meta` holds the key's check value.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from engage_assets.domain.pressure import normalize_address
from resources.delivery_ledger.suppression import SuppressionHashes
from resources.sqlite_wal import chunked_in, write_transaction

SCHEMA_VERSION = 2
SUPPRESSION_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppression_keyed (
    channel      TEXT NOT NULL,
    address_hash TEXT NOT NULL,
    reason       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (channel, address_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
_LEGACY = "suppression_legacy"


def migrate(conn: sqlite3.Connection) -> bool:
    """Bring the ledger file to SCHEMA_VERSION (idempotent; concurrent openers serialize on the write lock).  False
    when it could not run yet: the connection is inside another handle's transaction (the next handle will)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return True
    if conn.in_transaction:
        return False
    with write_transaction(conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            if _has_table(conn, "suppression_list"):  # version 1: plain SHA-256 hashes
                conn.execute(f"ALTER TABLE suppression_list RENAME TO {_LEGACY}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return True


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


class SqliteSuppressionList:
    """`add_suppression`, `suppressed_addresses` and `legacy_count` over the ledger's file (the ledger provides the
    connection and `hashes`)."""

    hashes: SuppressionHashes
    _key_checked: bool = False

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError  # the ledger's own

    def _checked(self, conn: sqlite3.Connection) -> SuppressionHashes:
        """`hashes`, once the file's recorded key check is this key's (recorded on first use)."""
        if not self._key_checked:
            conn.execute(
                "INSERT OR IGNORE INTO ledger_meta VALUES ('suppression_key_check', ?)", (self.hashes.check_value(),)
            )
            row = conn.execute("SELECT value FROM ledger_meta WHERE name = 'suppression_key_check'").fetchone()
            self.hashes.verify(row[0])
            self._key_checked = True
        return self.hashes

    def add_suppression(self, channel: str, address: str, reason: str, now: int) -> None:
        """Put an address on the suppression list (bounce, complaint, invalid address); first reason wins."""
        conn = self._conn()
        conn.execute(
            "INSERT OR IGNORE INTO suppression_keyed VALUES (?, ?, ?, ?)",
            (channel, self._checked(conn).of(address), reason, now),
        )

    def suppressed_addresses(self, conn: sqlite3.Connection, channel: str, addresses: Iterable[str]) -> dict[str, str]:
        """{normalized address: reason} of the given addresses on the channel's suppression list; a version-1 entry
        found for one of them is re-keyed on the way (inside the caller's transaction)."""
        addresses = list(addresses)
        keyed = self._checked(conn).keyed(addresses)
        found = {
            keyed[h]: reason
            for h, reason in chunked_in(
                conn,
                "SELECT address_hash, reason FROM suppression_keyed WHERE channel = ? AND address_hash IN ({})",
                list(keyed),
                head=(channel,),
            )
        }
        if len(found) < len(keyed) and _has_table(conn, _LEGACY):
            found |= self._rekey(conn, channel, [a for a in addresses if normalize_address(a) not in found])
        return found

    def _rekey(self, conn: sqlite3.Connection, channel: str, addresses: list[str]) -> dict[str, str]:
        """The legacy entries of these addresses, each moved to a keyed entry (same reason and time)."""
        plain = self.hashes.legacy(addresses)
        rows = chunked_in(
            conn,
            f"SELECT address_hash, reason, created_at FROM {_LEGACY} WHERE channel = ? AND address_hash IN ({{}})",
            list(plain),
            head=(channel,),
        )
        for h, reason, created_at in rows:
            conn.execute(
                "INSERT OR IGNORE INTO suppression_keyed VALUES (?, ?, ?, ?)",
                (channel, self.hashes.of(plain[h]), reason, created_at),
            )
            conn.execute(f"DELETE FROM {_LEGACY} WHERE channel = ? AND address_hash = ?", (channel, h))
        return {plain[h]: reason for h, reason, _ in rows}

    def legacy_count(self) -> int:
        """How many version-1 (plain SHA-256) entries are left to re-key."""
        conn = self._conn()
        return conn.execute(f"SELECT count(*) FROM {_LEGACY}").fetchone()[0] if _has_table(conn, _LEGACY) else 0
