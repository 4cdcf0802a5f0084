"""Embedded warehouse generator: the raw tables of docs/data-model.md, deterministic for a seed.

The populations are drawn so that the spec's funnels come out of the real filters (refunds 50,000 a day →
about 10,000; win-back 100,000 in the 30–90 day window → about 15,000; churn 500,000 with signals → about
25,000; abandoned carts about 145 a day, derived in `carts`), and the labelled history comes from a known
logistic process (`true_p_*` columns, `true_purchase_prob`) so the platform's models can be trained and judged
against the truth.  Everything is vectorised NumPy handed to DuckDB as
Arrow; string columns (ids, names, e-mail addresses) are formatted inside DuckDB.

`common` holds the reference data and volumes, `population` the operational tables, `outcomes` the labelled
history, `carts` (with `commerce`: inventory, payment methods, e-mail engagement) the abandoned carts and their
labelled outcomes, `load` the DuckDB side.  Every table draws from one random generator in a fixed order
(`raw_tables`), so a seed gives the same warehouse.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from engage_assets.demo.datagen.carts import cart_tables
from engage_assets.demo.datagen.common import (
    AT_RISK_PER_WEEK,
    CHURN_EVENTS_PER_DAY,
    ORDER_ISSUES_PER_DAY,
    Populations,
)
from engage_assets.demo.datagen.load import write_raw
from engage_assets.demo.datagen.outcomes import churn_outcomes, refund_outcomes, winback_outcomes
from engage_assets.demo.datagen.population import (
    churned_customers,
    customer_analytics,
    customers,
    offer_history,
    order_tracking,
)

__all__ = ["Populations", "generate", "main", "populations", "raw_tables"]


def populations(scale: float) -> Populations:
    """The customer id ranges at `scale` (with floors, so a tiny scale still fills every funnel)."""
    return Populations(
        shoppers=max(int(1_300_000 * scale), 2_000),
        at_risk=max(int(700_000 * scale), 1_000),
        churned=max(int(400_000 * scale), 1_000),
    )


def raw_tables(rng: np.random.Generator, pops: Populations, end: date, scale: float) -> dict[str, pa.Table]:
    """Every raw table, drawn in this order from `rng` (the order is part of what a seed means)."""
    cust, mkt = customers(rng, pops, end)
    tables = {
        "customers": cust,
        "order_tracking": order_tracking(rng, pops, end, max(int(ORDER_ISSUES_PER_DAY * scale), 50), mkt),
        "churned_customers": churned_customers(rng, pops, end, max(int(CHURN_EVENTS_PER_DAY * scale), 10)),
        "customer_analytics": customer_analytics(rng, pops, end, max(int(AT_RISK_PER_WEEK * scale), 500)),
        "offer_history": offer_history(rng, pops, end, scale),
        "refund_outcomes": refund_outcomes(rng, max(int(200_000 * scale), 4_000), pops, end),
        "winback_outcomes": winback_outcomes(rng, max(int(120_000 * scale), 4_000), pops, end),
        "churn_outcomes": churn_outcomes(rng, max(int(200_000 * scale), 4_000), pops, end),
    }
    # Drawn last, so adding them left every table above byte-identical for a seed.
    tables.update(cart_tables(rng, pops, end, scale, cust, mkt))
    return tables


def generate(
    warehouse_path: str | Path, scale: float = 1.0, seed: int = 7, end_date: date | None = None
) -> dict[str, int]:
    """Write the raw tables into `warehouse_path` (schema `raw`, replacing them); return row counts.

    `end_date` (default: today, UTC) is the first day *without* data: order issues cover the 42 days before it,
    so the latest daily partition is the day before.
    """
    end = end_date or datetime.now(UTC).date()
    rng = np.random.default_rng(seed)
    tables = raw_tables(rng, populations(scale), end, scale)
    loaded = datetime.combine(end, datetime.min.time()) + timedelta(hours=1)
    return write_raw(warehouse_path, tables, loaded)


def main(argv: list[str] | None = None) -> None:
    """`python -m engage_assets.demo.datagen --warehouse PATH [--scale] [--seed] [--end-date]`."""
    parser = argparse.ArgumentParser(description="Generate Engage's embedded warehouse (raw tables).")
    parser.add_argument("--warehouse", required=True, help="DuckDB file to write")
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = the spec's volumes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end-date", type=date.fromisoformat, default=None, help="first day without data")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    counts = generate(args.warehouse, scale=args.scale, seed=args.seed, end_date=args.end_date)
    for name, n in counts.items():
        print(f"  raw.{name:<20} {n:>12,} rows")
    print(f"  generated in {time.perf_counter() - t0:.1f} s")
