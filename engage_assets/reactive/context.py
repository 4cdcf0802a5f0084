"""Enrichment: the context a cart's filters and model read, joined onto the batch in one DuckDB pass over Arrow.

Where each column comes from (one query per source for the whole batch, never one per event):
- `marts.cart_customer_context` (one table: a point lookup, not the features' window functions over every customer):
  account_status, marketplace, time_zone, marketing_opt_out, and the purchase features defined as in `marts.carts`
  and `marts.training_cart_outcomes` (so the model scores what it was trained on): payment_method_on_file (newest
  `customer_payment_methods` load, false when none), purchase_history, email_engagement, discount_sensitivity.
  A customer it lacks is unknown (the event is quarantined `unknown_customer`);
- `intermediate.int_fx_rates_latest`: `cart_value` is the event's value in USD (queried only for other currencies);
- `marts.carts` (a cart the warehouse already knows) and the cart state (`CartPurchased` events): `cart_active` is
  false once the cart was purchased or expired, or abandoned more than `candidateTTLDays` ago;
- `all_items_in_stock`: per item the newest word on its stock among the event's own `inStock`, the newest
  `staging.stg_inventory` row and the newest `InventoryChanged` event (an unknown product is not in stock);
- the delivery ledger: `recovery_messages_7d`, this program's touches claimed or sent in the last 7 days, every
  channel counted;
- `days_since_program_offer` is NULL: the de-duplication key, not a lookback, keeps a cart from a second sequence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from engage_assets.domain.config import ReactiveProgram
from engage_assets.domain.duck import cursor
from resources.cart_state.base import CartStateStore
from resources.delivery_ledger.base import DeliveryLedgerBackend
from resources.warehouse.base import WarehouseResource

RECOVERY_WINDOW = timedelta(days=7)

CUSTOMERS_SQL = """
SELECT CAST(customer_id AS VARCHAR) AS customer_id, account_status, marketplace, time_zone, marketing_opt_out,
       payment_method_on_file, purchase_history, email_engagement, discount_sensitivity
FROM marts.cart_customer_context WHERE customer_id IN ({ids})
"""
CARTS_SQL = "SELECT CAST(cart_id AS VARCHAR) AS cart_id, status FROM marts.carts WHERE cart_id IN ({ids})"
INVENTORY_SQL = """
SELECT CAST(product_id AS VARCHAR) AS product_id, in_stock, updated_at
FROM staging.stg_inventory WHERE product_id IN ({ids})
QUALIFY row_number() OVER (PARTITION BY product_id ORDER BY loaded_at DESC, updated_at DESC) = 1
"""
FX_SQL = "SELECT currency, usd_per_unit FROM intermediate.int_fx_rates_latest WHERE currency IN ({ids})"


def in_list(values: Sequence[str]) -> str:
    """A SQL IN list of quoted values (quotes doubled), NULL when empty."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in dict.fromkeys(values)) or "NULL"


@dataclass
class Context:
    """Everything enrichment joins, as Arrow tables (each possibly empty)."""

    customers: pa.Table  # customer_id, account_status, marketplace, time_zone, marketing_opt_out, the features
    carts: pa.Table  # cart_id, status
    inventory: pa.Table  # product_id, in_stock, updated_at (timestamp)
    fx: pa.Table  # currency, usd_per_unit
    purchased: pa.Table  # cart_id
    overrides: pa.Table  # product_id, in_stock, changed_at (epoch s)
    recovery: pa.Table  # customer_id, n


def _warehouse_tables(warehouse: WarehouseResource, abandoned: pa.Table, items: pa.Table) -> list[pa.Table]:
    """customers, carts, inventory, fx: one `query_arrow_many` (fx only for currencies other than USD)."""
    customers = abandoned.column("customer_id").to_pylist()
    carts = abandoned.column("cart_id").to_pylist()
    products = items.column("product_id").to_pylist()
    currencies = sorted(set(abandoned.column("currency").to_pylist()) - {"USD"})
    queries = [
        CUSTOMERS_SQL.format(ids=in_list(customers)),
        CARTS_SQL.format(ids=in_list(carts)),
        INVENTORY_SQL.format(ids=in_list(products)),
    ] + ([FX_SQL.format(ids=in_list(currencies))] if currencies else [])
    tables = warehouse.query_arrow_many(queries)
    if not currencies:
        tables.append(pa.table({"currency": pa.array([], pa.string()), "usd_per_unit": pa.array([], pa.float64())}))
    return tables


def recovery_counts(
    ledger: DeliveryLedgerBackend, program_id: str, customer_ids: Sequence[str], now: datetime
) -> pa.Table:
    """customer_id, n: this program's touches claimed or sent in the 7 days before `now`, every channel."""
    since = int((now - RECOVERY_WINDOW).timestamp())
    with ledger.transaction() as conn:
        contacts = ledger.contacts_since(conn, list(customer_ids), since)
    counts = Counter(c for c, program, *_ in contacts if program == program_id)
    return pa.table(
        {"customer_id": pa.array(list(counts), pa.string()), "n": pa.array(list(counts.values()), pa.int64())}
    )


def gather(
    warehouse: WarehouseResource,
    cart_state: CartStateStore,
    ledger: DeliveryLedgerBackend,
    program: ReactiveProgram,
    abandoned: pa.Table,
    items: pa.Table,
    now: datetime,
) -> Context:
    """Read every source once for the whole batch."""
    customers, carts, inventory, fx = _warehouse_tables(warehouse, abandoned, items)
    purchased = cart_state.purchased_carts(abandoned.column("cart_id").to_pylist())
    stock = cart_state.stock(items.column("product_id").to_pylist())
    overrides = pa.table(
        {
            "product_id": pa.array(list(stock), pa.string()),
            "in_stock": pa.array([s.in_stock for s in stock.values()], pa.bool_()),
            "changed_at": pa.array([s.changed_at for s in stock.values()], pa.float64()),
        }
    )
    return Context(
        customers=customers,
        carts=carts,
        inventory=inventory,
        fx=fx,
        purchased=pa.table({"cart_id": pa.array(list(purchased), pa.string())}),
        overrides=overrides,
        recovery=recovery_counts(ledger, program.programId, abandoned.column("customer_id").to_pylist(), now),
    )


STOCK_SQL = """
WITH w AS (SELECT product_id, in_stock, epoch(updated_at) AS updated_at FROM inventory)
SELECT i.cart_id,
       bool_and(coalesce(CASE
           WHEN o.changed_at IS NOT NULL AND o.changed_at >= greatest(coalesce(w.updated_at, -1e18),
                CASE WHEN i.in_stock IS NULL THEN -1e18 ELSE i.observed_at END) THEN o.in_stock
           WHEN i.in_stock IS NOT NULL AND i.observed_at >= coalesce(w.updated_at, -1e18) THEN i.in_stock
           ELSE w.in_stock END, false)) AS all_items_in_stock
FROM items AS i
LEFT JOIN w ON w.product_id = i.product_id
LEFT JOIN overrides AS o ON o.product_id = i.product_id
GROUP BY i.cart_id
"""

ENRICH_SQL = """
WITH stock AS (
{stock}
)
SELECT e.*, c.customer_id IS NOT NULL AS known_customer,
       c.account_status, c.marketplace, c.time_zone, c.marketing_opt_out,
       coalesce(c.payment_method_on_file, false) AS payment_method_on_file,
       c.purchase_history, c.email_engagement, c.discount_sensitivity,
       CASE WHEN e.currency = 'USD' THEN e.cart_value_local
            ELSE round(e.cart_value_local * fx.usd_per_unit, 2) END AS cart_value,
       coalesce(r.n, 0) AS recovery_messages_7d,
       s.all_items_in_stock,
       NOT (coalesce(k.status IN ('purchased', 'expired'), false) OR p.cart_id IS NOT NULL
            OR e.abandoned_at < $expired_before) AS cart_active,
       CAST(NULL AS INTEGER) AS days_since_program_offer
FROM events AS e
LEFT JOIN customers AS c ON c.customer_id = e.customer_id
LEFT JOIN fx ON fx.currency = e.currency
LEFT JOIN recovery AS r ON r.customer_id = e.customer_id
LEFT JOIN stock AS s ON s.cart_id = e.cart_id
LEFT JOIN carts AS k ON k.cart_id = e.cart_id
LEFT JOIN purchased AS p ON p.cart_id = e.cart_id
ORDER BY e.dedup_key
"""


def enrich(program: ReactiveProgram, abandoned: pa.Table, items: pa.Table, ctx: Context, now: datetime) -> pa.Table:
    """The batch with its context columns (module docstring), one row per event, in dedup-key order."""
    con = cursor()
    try:
        for name, table in (
            ("events", abandoned),
            ("items", items),
            ("customers", ctx.customers),
            ("carts", ctx.carts),
            ("inventory", ctx.inventory),
            ("fx", ctx.fx),
            ("purchased", ctx.purchased),
            ("overrides", ctx.overrides),
            ("recovery", ctx.recovery),
        ):
            con.register(name, table)
        expired_before = now - timedelta(days=program.candidateTTLDays)
        return con.sql(ENRICH_SQL.format(stock=STOCK_SQL), params={"expired_before": expired_before}).to_arrow_table()
    finally:
        con.close()
