"""SQLite cart state: the embedded default (ENGAGE_ENV=local), one WAL file shared by every consumer process."""

from __future__ import annotations

from collections.abc import Sequence

from resources.cart_state.base import CartPurchase, CartStateStore, StockChange
from resources.sqlite_wal import SqliteFileResource, chunked_in, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS cart_purchases (
    cart_id      TEXT PRIMARY KEY,
    customer_id  TEXT NOT NULL,
    order_id     TEXT NOT NULL,
    purchased_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cart_purchases_customer ON cart_purchases (customer_id, purchased_at);
CREATE TABLE IF NOT EXISTS stock_changes (
    product_id TEXT PRIMARY KEY,
    in_stock   INTEGER NOT NULL,
    changed_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expired_carts (
    program_id  TEXT NOT NULL,
    cart_id     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    expired_at  REAL NOT NULL,
    PRIMARY KEY (program_id, cart_id)
) WITHOUT ROWID;
"""

UPSERT_STOCK = """
INSERT INTO stock_changes (product_id, in_stock, changed_at) VALUES (?, ?, ?)
ON CONFLICT (product_id) DO UPDATE SET in_stock = excluded.in_stock, changed_at = excluded.changed_at
WHERE excluded.changed_at >= stock_changes.changed_at
"""


class SqliteCartState(SqliteFileResource, CartStateStore):
    """Cart purchases and stock changes in one SQLite file (WAL); `path` must be a file path."""

    SCHEMA = SCHEMA

    def record_purchases(self, purchases: Sequence[CartPurchase]) -> int:
        """Record purchases; a cart's first purchase stands."""
        if not purchases:
            return 0
        rows = [(p.cart_id, p.customer_id, p.order_id, float(p.purchased_at)) for p in purchases]
        with write_transaction(self._conn()) as conn:
            return conn.executemany("INSERT OR IGNORE INTO cart_purchases VALUES (?, ?, ?, ?)", rows).rowcount

    def purchased_carts(self, cart_ids: Sequence[str]) -> dict[str, float]:
        """{cart_id: purchased_at} of the purchased ones."""
        rows = chunked_in(
            self._conn(), "SELECT cart_id, purchased_at FROM cart_purchases WHERE cart_id IN ({})", list(cart_ids)
        )
        return {c: float(t) for c, t in rows}

    def purchasers_since(self, customer_ids: Sequence[str], since: float) -> set[str]:
        """Customers with a purchase at or after `since`."""
        rows = chunked_in(
            self._conn(),
            "SELECT DISTINCT customer_id FROM cart_purchases WHERE customer_id IN ({}) AND purchased_at >= ?",
            list(dict.fromkeys(customer_ids)),
            tail=(float(since),),
        )
        return {r[0] for r in rows}

    def record_stock(self, changes: Sequence[StockChange]) -> int:
        """Record stock changes, the newest per product winning."""
        if not changes:
            return 0
        rows = [(c.product_id, int(c.in_stock), float(c.changed_at)) for c in changes]
        with write_transaction(self._conn()) as conn:
            return conn.executemany(UPSERT_STOCK, rows).rowcount

    def stock(self, product_ids: Sequence[str]) -> dict[str, StockChange]:
        """The newest recorded change per product."""
        rows = chunked_in(
            self._conn(),
            "SELECT product_id, in_stock, changed_at FROM stock_changes WHERE product_id IN ({})",
            list(dict.fromkeys(product_ids)),
        )
        return {p: StockChange(p, bool(s), float(t)) for p, s, t in rows}

    def expire_carts(self, program_id: str, carts: Sequence[tuple[str, str]], now: float) -> list[tuple[str, str]]:
        """Mark the carts expired in one transaction; the first mark stands (INSERT OR IGNORE)."""
        if not carts:
            return []
        insert = "INSERT OR IGNORE INTO expired_carts VALUES (?, ?, ?, ?)"
        with write_transaction(self._conn()) as conn:
            return [(c, k) for c, k in dict.fromkeys(carts) if conn.execute(insert, (program_id, k, c, now)).rowcount]

    def expired_carts(self, program_id: str, cart_ids: Sequence[str]) -> dict[str, float]:
        """{cart_id: expired_at} of the expired ones."""
        rows = chunked_in(
            self._conn(),
            "SELECT cart_id, expired_at FROM expired_carts WHERE program_id = ? AND cart_id IN ({})",
            list(dict.fromkeys(cart_ids)),
            head=(program_id,),
        )
        return {c: float(t) for c, t in rows}
