"""A small warehouse written by hand, as a user brings one: the raw tables (schema `raw`, columns of
`docs/data-model.md`) a refund-shaped program reads — customers, order tracking, FX rates, offer history — and the
labelled refund outcomes its models train on.  Nothing here comes from the demo generator.

Every customer is active, reachable by e-mail, worth $900 with six orders a year; each has one order delivered on
`DAY`, five days late, so every order passes the refund program's rules.  The outcomes (`OUTCOMES` rows) follow a
fixed rule of two features, the delay and the satisfaction history, so a model trained on them beats the naive
one-feature baseline the promotion gate compares it with (`domain.models.evaluation`): with one feature alone it
could not, and would rightly never be promoted.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

DAY = date(2026, 11, 21)  # the orders' delivery day: partition DAY of a daily program
LOADED = datetime(2026, 11, 22, 1, 0)
CUSTOMERS = {f"C{i:02d}": ("US", "UK", "DE")[i % 3] for i in range(1, 13)}
OUTCOMES = 1200

RAW_DDL = {
    "customers": """customer_id VARCHAR, customer_name VARCHAR, email VARCHAR, phone VARCHAR, marketplace VARCHAR,
        time_zone VARCHAR, subscription_tier VARCHAR, signup_date DATE, lifetime_value_usd DOUBLE,
        orders_last_365d INTEGER, monthly_revenue_usd DOUBLE, satisfaction_history DOUBLE, complaint_history INTEGER,
        discount_sensitivity DOUBLE, account_status VARCHAR, email_opt_in BOOLEAN, sms_opt_in BOOLEAN,
        push_opt_in BOOLEAN, phone_opt_in BOOLEAN, marketing_opt_out BOOLEAN, updated_at TIMESTAMP""",
    "order_tracking": """order_id VARCHAR, customer_id VARCHAR, delivery_date DATE, expected_delivery_date DATE,
        delay_days VARCHAR, order_value DOUBLE, currency VARCHAR, item_condition VARCHAR, customer_complaints INTEGER,
        refundable BOOLEAN, loaded_at TIMESTAMP""",
    "fx_rates": "currency VARCHAR, usd_per_unit DOUBLE, loaded_at TIMESTAMP",
    "offer_history": """offer_id VARCHAR, customer_id VARCHAR, program_id VARCHAR, offer_type VARCHAR,
        offer_date DATE, order_id VARCHAR, amount_usd DOUBLE, loaded_at TIMESTAMP""",
    "refund_outcomes": """issue_id VARCHAR, customer_id VARCHAR, issue_date DATE, delay_days INTEGER,
        order_value_usd DOUBLE, item_damaged BOOLEAN, lifetime_value_usd DOUBLE, satisfaction_history DOUBLE,
        complaint_history INTEGER, order_frequency INTEGER, dissatisfied BOOLEAN, churned_90d BOOLEAN,
        true_p_dissatisfied DOUBLE, true_p_churn DOUBLE, loaded_at TIMESTAMP""",
}


def customer(customer_id: str, marketplace: str, **changes: Any) -> dict[str, Any]:
    """One raw customer row: active, e-mail opt-in, $900 lifetime value, six orders a year."""
    return {
        "customer_id": customer_id,
        "customer_name": f"Name {customer_id}",
        "email": f"{customer_id.lower()}@example.com",
        "phone": "+12025550100",
        "marketplace": marketplace,
        "time_zone": "America/New_York",
        "subscription_tier": "standard",
        "signup_date": date(2020, 1, 1),
        "lifetime_value_usd": 900.0,
        "orders_last_365d": 6,
        "monthly_revenue_usd": 40.0,
        "satisfaction_history": 4.2,
        "complaint_history": 0,
        "discount_sensitivity": 0.3,
        "account_status": "active",
        "email_opt_in": True,
        "sms_opt_in": True,
        "push_opt_in": False,
        "phone_opt_in": False,
        "marketing_opt_out": False,
        "updated_at": LOADED,
        **changes,
    }


def _outcome(i: int) -> dict[str, Any]:
    """A labelled past issue: the longer the delay, and the lower the customer's past satisfaction, the likelier the
    customer was dissatisfied (a fixed rule: 4 % a day of delay, 45 % more below a 3.0 rating)."""
    delay = i % 12
    satisfaction = 2.0 + (i % 30) / 10
    percent = 4 * delay + (45 if satisfaction < 3.0 else 0)
    dissatisfied = (i * 2654435761) % 1000 < 10 * percent  # a multiplicative hash: an even draw per row
    return {
        "issue_id": f"I{i:05d}",
        "customer_id": f"C{1 + i % 12:02d}",
        "issue_date": DAY - timedelta(days=30 + i % 300),
        "delay_days": delay,
        "order_value_usd": 20.0 + (i * 37) % 180,
        "item_damaged": i % 9 == 0,
        "lifetime_value_usd": 100.0 + (i * 53) % 1500,
        "satisfaction_history": satisfaction,
        "complaint_history": i % 4,
        "order_frequency": 1 + i % 10,
        "dissatisfied": dissatisfied,
        "churned_90d": (i * 104729) % 100 < 10 + 3 * (i % 4),
        "true_p_dissatisfied": percent / 100,
        "true_p_churn": 0.1 + 0.03 * (i % 4),
        "loaded_at": LOADED,
    }


def raw_rows() -> dict[str, list[dict[str, Any]]]:
    """Every raw table's rows."""
    return {
        "customers": [customer(c, m) for c, m in CUSTOMERS.items()],
        "order_tracking": [
            {
                "order_id": f"O_{c}",
                "customer_id": c,
                "delivery_date": DAY,
                "expected_delivery_date": DAY - timedelta(days=5),
                "delay_days": "5",
                "order_value": 80.0,
                "currency": "USD",
                "item_condition": "good",
                "customer_complaints": 0,
                "refundable": True,
                "loaded_at": LOADED,
            }
            for c in CUSTOMERS
        ],
        "fx_rates": [{"currency": "USD", "usd_per_unit": 1.0, "loaded_at": LOADED}],
        "offer_history": [
            {
                "offer_id": "H1",
                "customer_id": "C01",
                "program_id": "win-back-campaigns",
                "offer_type": "standard",
                "offer_date": DAY - timedelta(days=200),
                "order_id": None,
                "amount_usd": 10.0,
                "loaded_at": LOADED,
            }
        ],
        "refund_outcomes": [_outcome(i) for i in range(OUTCOMES)],
    }


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    """Append rows (dicts with every column of RAW_DDL[table]) to raw.<table>."""
    columns = [c.split()[0] for c in RAW_DDL[table].replace("\n", " ").split(",")]
    con.executemany(
        f"INSERT INTO raw.{table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [[r[c] for c in columns] for r in rows],
    )


def write_warehouse(path: Path) -> None:
    """Create the DuckDB file with schema `raw` and every table of `raw_rows()`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA raw")
        for table, rows in raw_rows().items():
            con.execute(f"CREATE TABLE raw.{table} ({RAW_DDL[table]})")
            insert(con, table, rows)
