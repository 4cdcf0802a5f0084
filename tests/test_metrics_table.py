"""`engage run`'s closing metrics table (engage_assets/cli/metrics_table.py): the spec's terms, the measured value
beside the spec's figure, "no data" where nothing was measured, the lift's interval; read through the warehouse
resource, and a missing metrics schema said, not raised."""

from __future__ import annotations

from types import SimpleNamespace

import dagster as dg
import duckdb

from engage_assets.cli.metrics_table import format_value, label, metrics_lines, print_program_metrics
from resources.warehouse.duckdb import DuckDBWarehouse

PROGRAMS = [
    SimpleNamespace(programId="proactive-refunds", programName="Proactive Refund Offers"),
    SimpleNamespace(programId="win-back-campaigns", programName="Win-Back Campaigns"),
]


def metric(program, name, dim, value, spec, unit, period=None):
    return {
        "program_id": program,
        "metric_name": name,
        "dimension": dim,
        "metric_value": value,
        "spec_figure": spec,
        "unit": unit,
        "spec_period": period,
    }


ROWS = [
    metric("proactive-refunds", "satisfaction_recovery_rate", "impact_level=high", 0.912, 0.95, "rate"),
    metric("proactive-refunds", "satisfaction_recovery_rate", "all", 0.831, 0.85, "rate"),
    metric("proactive-refunds", "roi", "all", 3120.4, 3294.0, "percent"),
    metric("proactive-refunds", "churn_prevented", "all", 412.0, 7000.0, "count", "per day"),
    metric("proactive-refunds", "campaign_cost_usd", "all", 1234.5, 85000.0, "usd", "per day"),
    metric("proactive-refunds", "open_rate", "channel=sms", 0.5, None, "rate"),  # no spec figure: not shown
    metric("win-back-campaigns", "winback_rate", "likelihood=high", None, 0.42, "rate"),
]
LIFTS = [
    {"program_id": "proactive-refunds", "lift": 0.123, "lift_ci_low": 0.081, "lift_ci_high": 0.165}
    | {"treated_n": 9000, "control_n": 1000},
    {"program_id": "win-back-campaigns", "lift": None, "lift_ci_low": None, "lift_ci_high": None}
    | {"treated_n": 0, "control_n": 0},
]


def test_values_and_labels_in_the_spec_terms():
    assert format_value(0.85, "rate") == "85.0 %"
    assert format_value(3294.0, "percent") == "3,294 %"
    assert format_value(2_800_000.0, "usd") == "$2,800,000"
    assert format_value(14.15, "usd") == "$14.15"
    assert format_value(7000.0, "count") == "7,000"
    assert format_value(None, "rate") == "no data"
    assert label("proactive-refunds", "satisfaction_recovery_rate", "impact_level=high") == (
        "satisfaction recovery, high impact"
    )
    assert label("win-back-campaigns", "winback_rate", "likelihood=low") == "win-back rate, low likelihood"
    assert label("churn-prevention", "cost_per_conversion", "all") == "cost per retained customer"
    assert label("abandoned-cart-recovery", "open_rate", "channel=email") == "email open rate"


def test_each_program_measured_beside_the_spec_figure():
    lines = metrics_lines(ROWS, LIFTS, {p.programId: p.programName for p in PROGRAMS})
    text = "\n".join(lines)
    refunds = text[: text.index("== Win-Back")]
    assert "== Proactive Refund Offers (proactive-refunds)" in refunds
    recovery = next(line for line in lines if line.strip().startswith("satisfaction recovery "))
    assert "83.1 %" in recovery and recovery.rstrip().endswith("85.0 % (spec)")
    assert refunds.index("satisfaction recovery ") < refunds.index("satisfaction recovery, high impact")
    churn = next(line for line in lines if "churn prevented" in line)
    assert "412" in churn and churn.rstrip().endswith("7,000 (spec, per day)")
    assert "3,120 %" in refunds and "3,294 % (spec)" in refunds
    assert "net cost (after unredeemed credits)" in refunds and "$85,000 (spec, per day)" in refunds
    assert "open rate" not in refunds  # a channel rate the spec asserts nothing for is left out
    assert "+12.3pp   [+8.1, +16.5] pp, 9,000 treated / 1,000 held out" in refunds
    winback = text[text.index("== Win-Back") :]
    assert "no data yet" in winback
    high = next(line for line in lines if "high likelihood" in line)
    assert "no data" in high and high.rstrip().endswith("42.0 % (spec)")
    assert "lift vs holdout" not in winback


def test_printed_from_the_warehouse_and_a_missing_schema_is_said(tmp_path, capsys):
    path = tmp_path / "wh.duckdb"
    defs = dg.Definitions(resources={"warehouse": DuckDBWarehouse(path=str(path))})
    duckdb.connect(str(path)).close()
    print_program_metrics(defs, PROGRAMS)
    assert "no metrics: the metric models could not be read" in capsys.readouterr().out
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA metrics")
        con.execute(
            "CREATE TABLE metrics.program_metrics (program_id VARCHAR, metric_name VARCHAR, dimension VARCHAR, "
            "metric_value DOUBLE, spec_figure DOUBLE, unit VARCHAR, spec_period VARCHAR)"
        )
        con.executemany(
            "INSERT INTO metrics.program_metrics VALUES (?, ?, ?, ?, ?, ?, ?)", [list(r.values()) for r in ROWS]
        )
        con.execute(
            "CREATE TABLE metrics.holdout_lift AS SELECT 'proactive-refunds' AS program_id, 0.123 AS lift, "
            "0.081 AS lift_ci_low, 0.165 AS lift_ci_high, 9000 AS treated_n, 1000 AS control_n"
        )
    print_program_metrics(defs, PROGRAMS)
    out = capsys.readouterr().out
    assert "Metrics in the spec's terms" in out and "85.0 % (spec)" in out and "+12.3pp" in out
