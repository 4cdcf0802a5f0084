"""Writing the generated tables into DuckDB's `raw` schema; ids, names, e-mail addresses are formatted in SQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from engage_assets.demo.datagen.common import USD_PER_UNIT

FIRST_NAMES = (
    "Ava Ben Chloe Diego Emma Felix Grace Hiro Isla Jonas Kira Liam Maya Noah Olga Priya Quinn Rafael Sofia Tom Uma "
    "Victor Wen Yusuf"
).split()
LAST_NAMES = (
    "Silva Smith Müller Martin Sato Sharma Jones Brown Garcia Kim Nguyen Rossi Dubois Tanaka Patel Wilson Costa "
    "Schmidt Taylor Lee"
).split()
CID = "printf('C%08d', cid)"
KID = "printf('CART-%09d', kid)"
PID = "printf('P%05d', pid)"


def raw_selects(loaded: datetime) -> dict[str, str]:
    """Per table, the SELECT over the generated rows (`src`) that shapes them into the raw table (no FROM: from
    `src`)."""
    first = ", ".join(f"'{n}'" for n in FIRST_NAMES)
    last = ", ".join(f"'{n}'" for n in LAST_NAMES)
    return {
        "customers": f"""
            SELECT {CID} AS customer_id,
                   [{first}][1 + cid % {len(FIRST_NAMES)}] || ' ' || [{last}][1 + (cid // 7) % {len(LAST_NAMES)}]
                       AS customer_name,
                   'customer' || cid || '@example.com' AS email,
                   '+1555' || lpad(CAST(cid % 10000000 AS VARCHAR), 7, '0') AS phone,
                   * EXCLUDE (cid), TIMESTAMP '{loaded}' AS updated_at""",
        "order_tracking": f"SELECT printf('O%010d', oid) AS order_id, {CID} AS customer_id, * EXCLUDE (oid, cid)",
        "churned_customers": f"""
            SELECT {CID} AS customer_id, t.* EXCLUDE (cid), c.lifetime_value_usd, c.subscription_tier,
                   c.account_status
            FROM src t JOIN raw.customers c ON c.customer_id = printf('C%08d', t.cid)""",
        "customer_analytics": f"""
            SELECT t.snapshot_date, {CID} AS customer_id, t.* EXCLUDE (cid, snapshot_date), c.lifetime_value_usd
            FROM src t JOIN raw.customers c ON c.customer_id = printf('C%08d', t.cid)""",
        "offer_history": f"""
            SELECT printf('H%010d', oid) AS offer_id, {CID} AS customer_id, * EXCLUDE (oid, cid),
                   CAST(NULL AS VARCHAR) AS order_id""",
        "refund_outcomes": f"SELECT printf('I%09d', iid) AS issue_id, {CID} AS customer_id, * EXCLUDE (iid, cid)",
        "winback_outcomes": f"SELECT {CID} AS customer_id, * EXCLUDE (cid)",
        "churn_outcomes": f"SELECT {CID} AS customer_id, * EXCLUDE (cid)",
        "inventory": f"SELECT {PID} AS product_id, * EXCLUDE (pid)",
        "customer_payment_methods": f"SELECT {CID} AS customer_id, * EXCLUDE (cid)",
        "email_engagement": f"SELECT {CID} AS customer_id, * EXCLUDE (cid)",
        "carts": f"SELECT {KID} AS cart_id, {CID} AS customer_id, * EXCLUDE (kid, cid)",
        "cart_items": f"SELECT {KID} AS cart_id, {PID} AS product_id, * EXCLUDE (kid, pid)",
        "cart_outcomes": f"SELECT {KID} AS cart_id, {CID} AS customer_id, * EXCLUDE (kid, cid)",
    }


# The generator's mark: a warehouse without it is somebody's own, and the generator never writes into it.
GENERATED_MARK = "raw.engage_demo_generator"


class NotAGeneratedWarehouse(RuntimeError):
    """The file holds tables the generator did not write: a user's own warehouse, never overwritten."""


def is_generated(warehouse_path: str | Path) -> bool:
    """Whether the file is a warehouse the generator wrote (it carries the generator's mark)."""
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        return bool(
            con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema || '.' || table_name = ?",
                [GENERATED_MARK],
            ).fetchall()[0][0]
        )


def refuse_foreign(warehouse_path: Path) -> None:
    """Raise NotAGeneratedWarehouse when the file exists and is not one the generator may write: it holds tables
    without the generator's mark, or it is not a DuckDB database at all."""
    try:
        if not warehouse_path.exists() or is_generated(warehouse_path):
            return
        with duckdb.connect(str(warehouse_path), read_only=True) as con:
            tables = con.execute("SELECT count(*) FROM information_schema.tables").fetchall()[0][0]
    except duckdb.Error as error:
        raise NotAGeneratedWarehouse(f"{warehouse_path} cannot be read as a DuckDB warehouse ({error})") from None
    if tables:
        raise NotAGeneratedWarehouse(
            f"{warehouse_path} holds tables the demo generator did not write: it is never overwritten "
            "(if it is an old demo warehouse, delete it first)"
        )


def write_raw(warehouse_path: str | Path, tables: dict[str, pa.Table], loaded: datetime) -> dict[str, int]:
    """Replace `raw.fx_rates` and every table of `tables` (in order: the customers first, the joins read them);
    return the row counts.  A file with tables the generator did not write is refused (NotAGeneratedWarehouse)."""
    fx = pa.table({"currency": list(USD_PER_UNIT), "usd_per_unit": list(USD_PER_UNIT.values())})
    selects = raw_selects(loaded)
    counts: dict[str, int] = {}
    refuse_foreign(Path(warehouse_path))
    Path(warehouse_path).parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse_path)) as con:

        def run(sql: str) -> list[Any]:
            return con.execute(sql).fetchall()  # duckdb 2 wants every result consumed

        run("CREATE SCHEMA IF NOT EXISTS raw")
        run(f"CREATE OR REPLACE TABLE {GENERATED_MARK} AS SELECT TIMESTAMP '{loaded}' AS loaded_at")
        con.register("fx", fx)
        run(f"CREATE OR REPLACE TABLE raw.fx_rates AS SELECT *, TIMESTAMP '{loaded}' AS loaded_at FROM fx")
        for name, table in tables.items():
            con.register("src", table)
            select = selects[name]
            if " FROM " not in select:
                select += " FROM src"
            loaded_col = "" if name == "customers" else f", TIMESTAMP '{loaded}' AS loaded_at"
            run(f"CREATE OR REPLACE TABLE raw.{name} AS SELECT *{loaded_col} FROM ({select})")
            con.unregister("src")
            counts[name] = run(f"SELECT count(*) FROM raw.{name}")[0][0]
        counts["fx_rates"] = len(USD_PER_UNIT)
    return counts
