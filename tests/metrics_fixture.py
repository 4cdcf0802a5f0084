"""A hand-made warehouse of the metric models (schema `metrics`, the columns and units of the shared contract that
dbt's models/metrics build): churn prevention and proactive refunds with known figures, win-back with the rows the
models write for a program with nothing measured yet (zero funnel totals, a NULL lift, NULL metric values), so a
report's tables and charts can be checked against them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

DAYS = [date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 29)]
PROGRAMS = {
    "churn-prevention": "Churn Prevention",
    "proactive-refunds": "Proactive Refund Offers",
    "win-back-campaigns": "Win-Back Campaigns",
}

DDL = {
    "program_daily_metrics": "metric_date DATE, program_id VARCHAR, sent INTEGER, delivered INTEGER, opened INTEGER, "
    "clicked INTEGER, converted INTEGER, cost_usd DOUBLE, revenue_usd DOUBLE, roi DOUBLE",
    "program_funnel": "program_id VARCHAR, segment VARCHAR, channel VARCHAR, candidates INTEGER, offered INTEGER, "
    "sent INTEGER, delivered INTEGER, opened INTEGER, clicked INTEGER, converted INTEGER",
    "holdout_lift": "program_id VARCHAR, treated_n INTEGER, treated_conversions INTEGER, treated_rate DOUBLE, "
    "control_n INTEGER, control_conversions INTEGER, control_rate DOUBLE, lift DOUBLE, lift_ci_low DOUBLE, "
    "lift_ci_high DOUBLE",
    "program_metrics": "program_id VARCHAR, metric_name VARCHAR, dimension VARCHAR, metric_value DOUBLE, "
    "spec_figure DOUBLE, unit VARCHAR, spec_period VARCHAR, spec_reference VARCHAR",
    "touch_attribution": "conversion_id VARCHAR, customer_id VARCHAR, program_id VARCHAR, touch_ref VARCHAR, "
    "channel VARCHAR, segment VARCHAR, attribution_model VARCHAR, value_usd DOUBLE, converted_at TIMESTAMP, "
    "touched_at TIMESTAMP, offer_id VARCHAR, conversion_type VARCHAR",
}

DAILY = [
    # sent, delivered, opened, clicked, converted, cost, revenue, roi (percent: revenue / cost x 100)
    (DAYS[0], "churn-prevention", 1200, 1180, 472, 236, 96, 1800.0, 38400.0, 2133.3),
    (DAYS[1], "churn-prevention", 1300, 1270, 520, 250, 104, 1950.0, 41600.0, 2133.3),
    (DAYS[2], "churn-prevention", 1250, 1225, 490, 245, 99, 1875.0, 39600.0, 2112.0),
    (DAYS[2], "proactive-refunds", 3000, 2940, 2352, 700, 610, 21500.0, 244000.0, 1134.9),
]
# (segment, channel) rows and the model's totals: (segment, 'all') per segment, ('all', channel) per channel (each
# carrying its segment's candidates), ('all', 'all') per program.
FUNNEL = [
    ("churn-prevention", "critical", "phone", 3829, 3422, 3422, 3300, 0, 0, 410),
    ("churn-prevention", "high", "email", 10599, 9519, 9519, 9300, 3720, 1860, 830),
    ("churn-prevention", "medium", "email", 6778, 6101, 6101, 5980, 2392, 1196, 310),
    ("churn-prevention", "critical", "all", 3829, 3422, 3422, 3300, 0, 0, 410),
    ("churn-prevention", "high", "all", 10599, 9519, 9519, 9300, 3720, 1860, 830),
    ("churn-prevention", "medium", "all", 6778, 6101, 6101, 5980, 2392, 1196, 310),
    ("churn-prevention", "all", "phone", 21206, 19042, 3422, 3300, 0, 0, 410),
    ("churn-prevention", "all", "email", 21206, 19042, 15620, 15280, 6112, 3056, 1140),
    ("churn-prevention", "all", "all", 21206, 19042, 19042, 18580, 6112, 3056, 1550),
    ("proactive-refunds", "high", "sms", 3000, 2700, 2700, 2646, 0, 420, 600),
    ("proactive-refunds", "medium", "email", 7000, 6300, 6300, 6174, 4939, 900, 1100),
    ("win-back-campaigns", "all", "all", 0, 0, 0, 0, 0, 0, 0),
]
LIFT = [
    ("churn-prevention", 19042, 1550, 0.0814, 2164, 110, 0.0508, 0.0306, 0.0201, 0.0411),
    ("proactive-refunds", 9000, 1700, 0.1889, 1000, 120, 0.12, 0.0689, 0.0458, 0.0920),
    ("win-back-campaigns", 0, 0, None, 0, 0, None, None, None, None),
]
METRICS = [
    ("churn-prevention", "retention_rate", "risk_level=critical", 0.412, 0.46, "rate", None, "§ Retention"),
    ("churn-prevention", "retention_rate", "all", 0.1987, 0.212, "rate", None, "§ Retention"),
    ("churn-prevention", "revenue_saved_usd", "all", 1_543_600.0, 2_100_000.0, "usd", "per year", "§ Business"),
    ("churn-prevention", "cost_per_conversion", "all", 14.71, 14.15, "usd", None, "§ Business"),
    ("churn-prevention", "roi", "all", 2026.0, 2800.0, "percent", None, "§ Business"),
    ("proactive-refunds", "satisfaction_recovery_rate", "impact_level=high", 0.913, 0.95, "rate", None, "§ Sat"),
    ("proactive-refunds", "churn_prevented", "all", 1700.0, 7000.0, "count", "per day", "§ Satisfaction"),
    ("win-back-campaigns", "winback_rate", "all", None, 0.172, "rate", None, "§ Win-Back Metrics"),
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
                con.executemany(
                    "INSERT INTO metrics.touch_attribution VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                    "TIMESTAMP '2026-11-28 12:00:00', TIMESTAMP '2026-11-27 10:00:00', 'O1', 'order_placed')",
                    [list(r) for r in ATTRIBUTION],
                )
                continue
            marks = ", ".join("?" * len(rows[name][0]))
            con.executemany(f"INSERT INTO metrics.{name} VALUES ({marks})", [list(r) for r in rows[name]])
    return path
