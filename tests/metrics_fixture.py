"""A hand-made warehouse of the metric models (schema `metrics`, the columns of the shared contract that dbt's
models/metrics build): two programs with known figures, so a report's tables and charts can be checked against them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

DAYS = [date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 29)]
PROGRAMS = {"churn-prevention": "Churn Prevention", "proactive-refunds": "Proactive Refund Offers"}

DDL = {
    "program_daily_metrics": "metric_date DATE, program_id VARCHAR, sent BIGINT, delivered BIGINT, opened BIGINT, "
    "clicked BIGINT, converted BIGINT, cost_usd DOUBLE, revenue_usd DOUBLE, roi DOUBLE",
    "program_funnel": "program_id VARCHAR, segment VARCHAR, channel VARCHAR, candidates BIGINT, offered BIGINT, "
    "sent BIGINT, delivered BIGINT, opened BIGINT, clicked BIGINT, converted BIGINT",
    "holdout_lift": "program_id VARCHAR, treated_n BIGINT, treated_conversions BIGINT, treated_rate DOUBLE, "
    "control_n BIGINT, control_conversions BIGINT, control_rate DOUBLE, lift DOUBLE, lift_ci_low DOUBLE, "
    "lift_ci_high DOUBLE",
    "program_metrics": "program_id VARCHAR, metric_name VARCHAR, dimension VARCHAR, metric_value DOUBLE, "
    "spec_figure DOUBLE, unit VARCHAR",
    "touch_attribution": "conversion_id VARCHAR, customer_id VARCHAR, program_id VARCHAR, touch_ref VARCHAR, "
    "channel VARCHAR, segment VARCHAR, attribution_model VARCHAR, value_usd DOUBLE, converted_at TIMESTAMP, "
    "touched_at TIMESTAMP",
}

DAILY = [
    # churn: sent, delivered, opened, clicked, converted, cost, revenue, roi
    (DAYS[0], "churn-prevention", 1200, 1180, 472, 236, 96, 1800.0, 38400.0, 20.333),
    (DAYS[1], "churn-prevention", 1300, 1270, 520, 250, 104, 1950.0, 41600.0, 20.333),
    (DAYS[2], "churn-prevention", 1250, 1225, 490, 245, 99, 1875.0, 39600.0, 20.12),
    (DAYS[2], "proactive-refunds", 3000, 2940, 2352, 700, 610, 21500.0, 244000.0, 10.349),
]
FUNNEL = [
    ("churn-prevention", "critical", "phone", 3829, 3422, 3422, 3300, 0, 0, 410),
    ("churn-prevention", "high", "email", 10599, 9519, 9519, 9300, 3720, 1860, 830),
    ("churn-prevention", "medium", "email", 6778, 6101, 6101, 5980, 2392, 1196, 310),
    ("proactive-refunds", "high", "sms", 3000, 2700, 2700, 2646, 0, 420, 600),
    ("proactive-refunds", "medium", "email", 7000, 6300, 6300, 6174, 4939, 900, 1100),
]
LIFT = [
    ("churn-prevention", 19042, 1550, 0.0814, 2164, 110, 0.0508, 0.0306, 0.0201, 0.0411),
    ("proactive-refunds", 9000, 1700, 0.1889, 1000, 120, 0.12, 0.0689, 0.0458, 0.0920),
]
METRICS = [
    ("churn-prevention", "retention_rate", "risk_level=critical", 0.412, 0.46, "ratio"),
    ("churn-prevention", "retention_rate", "all", 0.1987, 0.212, "ratio"),
    ("churn-prevention", "revenue_saved_usd", "all", 1_543_600.0, 2_100_000.0, "usd"),
    ("churn-prevention", "cost_per_conversion", "all", 14.71, 14.15, "usd"),
    ("churn-prevention", "roi", "all", 20.26, 28.0, "ratio"),
    ("proactive-refunds", "satisfaction_recovery_rate", "impact_level=high", 0.913, 0.95, "ratio"),
    ("proactive-refunds", "churn_prevented", "all", 1700.0, 7000.0, "customers"),
]
ATTRIBUTION = [
    ("V1", "C1", "churn-prevention", "T1", "email", "high", "last_touch", 400.0),
    ("V1", "C1", "churn-prevention", "T1", "email", "high", "first_touch", 400.0),
    ("V2", "C2", "churn-prevention", "T2", "phone", "critical", "last_touch", 400.0),
]


def write_metrics_warehouse(path: Path, tables: tuple[str, ...] = tuple(DDL)) -> Path:
    """A DuckDB file with `tables` of the metric models (all by default) filled with the figures above."""
    rows = {"program_daily_metrics": DAILY, "program_funnel": FUNNEL, "holdout_lift": LIFT, "program_metrics": METRICS}
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS metrics")
        for name in tables:
            con.execute(f"CREATE TABLE metrics.{name} ({DDL[name]})")
            if name == "touch_attribution":
                for r in ATTRIBUTION:
                    con.execute(
                        "INSERT INTO metrics.touch_attribution VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                        "TIMESTAMP '2026-11-28 12:00:00', TIMESTAMP '2026-11-27 10:00:00')",
                        list(r),
                    )
                continue
            marks = ", ".join("?" * len(rows[name][0]))
            con.executemany(f"INSERT INTO metrics.{name} VALUES ({marks})", [list(r) for r in rows[name]])
    return path
