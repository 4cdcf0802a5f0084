"""A small churn-prevention warehouse written as portable SQL, so the same rows load into DuckDB and into
Snowflake (fakesnow): customers spread over every filter of the chain, with NULL and NaN values, an unknown
customer, offers at the look-back boundaries (shared by the push-down's Snowflake test)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta

AS_OF = date(2026, 11, 16)  # churn prevention's partition 2026-11-09 runs on its end, the Monday after
PARTITION = "2026-11-09"

DDL = [
    "CREATE TABLE marts.customer_analytics (customer_id VARCHAR, snapshot_date DATE, engagement_trend VARCHAR, "
    "engagement_score DOUBLE, engagement_change DOUBLE, login_frequency DOUBLE, historical_avg DOUBLE, "
    "purchase_frequency DOUBLE, days_since_last_purchase INTEGER, support_tickets INTEGER, feature_usage DOUBLE, "
    "subscription_status VARCHAR, lifetime_value_usd DOUBLE, subscription_tenure_months INTEGER)",
    "CREATE TABLE marts.customers (customer_id VARCHAR, marketplace VARCHAR, time_zone VARCHAR, "
    "subscription_tier VARCHAR, account_status VARCHAR, lifetime_value_usd DOUBLE, order_frequency INTEGER, "
    "monthly_revenue_usd DOUBLE, satisfaction_history DOUBLE, complaint_history INTEGER, "
    "discount_sensitivity DOUBLE, marketing_opt_out BOOLEAN, email_opt_in BOOLEAN, sms_opt_in BOOLEAN, "
    "push_opt_in BOOLEAN, phone_opt_in BOOLEAN)",
    "CREATE TABLE marts.offer_history (customer_id VARCHAR, program_id VARCHAR, offer_date DATE, offer_id VARCHAR)",
]


def _lit(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float) and v != v:
        return "CAST('NaN' AS DOUBLE)"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, date):
        return f"DATE '{v.isoformat()}'"
    return "'" + str(v).replace("'", "''") + "'"


def _values(table: str, rows: list[tuple]) -> str:
    return f"INSERT INTO marts.{table} VALUES " + ", ".join("(" + ", ".join(map(_lit, r)) + ")" for r in rows)


def inserts(n: int = 240, seed: int = 3) -> Iterator[str]:
    """The INSERT statements of the data set (one per table)."""
    rng = random.Random(seed)
    analytics, customers, offers = [], [], []
    for i in range(n):
        cid = f"K{i:05d}"
        maybe = rng.random()
        score = float("nan") if maybe < 0.03 else (None if maybe < 0.05 else round(rng.random(), 3))
        analytics.append(
            (
                cid,
                AS_OF,
                rng.choice(["declining", "declining", "stable"]),
                score,
                round(rng.uniform(-0.8, 0.2), 3) if rng.random() > 0.05 else None,
                round(rng.uniform(0, 5), 2),
                round(rng.uniform(1, 6), 2),
                round(rng.uniform(0, 3), 2),
                rng.choice([10, 59, 60, 61, 90, 200, None]),
                rng.choice([0, 1, 3, None]) if rng.random() < 0.1 else rng.choice([0, 1, 3]),
                round(rng.random(), 2),
                "active",
                rng.choice([100.0, 499.99, 500.0, 2500.0, float("nan")]),
                rng.randint(1, 60),
            )
        )
        if i % 37 == 36:
            continue  # a customer the warehouse does not know
        customers.append(
            (
                cid,
                rng.choice(["US", "UK", "DE", "FR"]),
                "UTC",
                rng.choice(["basic", "premium", "enterprise", None]),
                rng.choice(["active", "active", "suspended", None]),
                rng.choice([300.0, 800.0, 5000.0, float("nan"), None]),
                rng.randint(0, 20),
                round(rng.uniform(10, 200), 2),
                4.0,
                0,
                0.5,
                rng.random() < 0.1,
                True,
                True,
                False,
                True,
            )
        )
        for back in rng.sample([1, 30, 89, 90, 91, 92, 200, 400], rng.randint(0, 2)):
            program = rng.choice(["churn-prevention", "win-back-campaigns"])
            offers.append((cid, program, AS_OF - timedelta(days=back), f"OF-{cid}-{back}"))
    yield _values("customer_analytics", analytics)
    yield _values("customers", customers)
    if offers:
        yield _values("offer_history", offers)
