"""`engage run`'s closing table: each program's metrics in the spec's terms (the dbt model `metrics.program_metrics`)
beside the figure the spec asserts (seed `spec_metric_figures`, with its section), and the holdout lift's 95 %
interval (`metrics.holdout_lift`).  A metric with nothing to measure yet says "no data"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

METRICS_SQL = """
SELECT program_id, metric_name, dimension, metric_value, spec_figure, unit, spec_period
FROM metrics.program_metrics
"""
LIFT_SQL = "SELECT program_id, lift, lift_ci_low, lift_ci_high, treated_n, control_n FROM metrics.holdout_lift"

# The spec's words for each metric, in the order printed; per program where the spec words it its own way.
LABELS = {
    "satisfaction_recovery_rate": "satisfaction recovery",
    "retention_rate": "retention",
    "winback_rate": "win-back rate",
    "conversion_rate": "conversion rate",
    "churn_prevented": "churn prevented (vs holdout baseline)",
    "churn_reduction_rate": "churn reduction (vs baseline)",
    "credit_redemption_rate": "credit redemption rate",
    "refunds_issued_usd": "refunds/credits issued",
    "credits_redeemed_usd": "credits redeemed",
    "revenue_saved_usd": "revenue saved",
    "revenue_recovered_usd": "revenue recovered",
    "revenue_per_conversion_usd": "average recovered revenue",
    "campaign_cost_usd": "campaign cost",
    "roi": "ROI",
    "cost_per_conversion": "cost per conversion",
    "delivery_rate": "delivery rate",
    "open_rate": "open rate",
    "click_rate": "click rate",
}
PROGRAM_LABELS = {
    ("proactive-refunds", "campaign_cost_usd"): "net cost (after unredeemed credits)",
    ("churn-prevention", "cost_per_conversion"): "cost per retained customer",
    ("win-back-campaigns", "cost_per_conversion"): "cost per win-back",
    ("abandoned-cart-recovery", "cost_per_conversion"): "cost per recovery",
    ("abandoned-cart-recovery", "conversion_rate"): "conversion rate (recovery)",
}
DIMENSIONS = {"impact_level": "{} impact", "risk_level": "{} risk", "likelihood": "{} likelihood", "channel": "{}"}
# Shown even where the spec asserts no figure (when measured): the business figures every program has.
ALWAYS = {"conversion_rate", "campaign_cost_usd", "roi", "cost_per_conversion"}


def format_value(value: float | None, unit: str) -> str:
    """A metric's value as the spec writes it: 85.0 %, 3,294 %, $2,800,000, $14.15, 7,000; "no data" for NULL."""
    if value is None:
        return "no data"
    if unit == "rate":
        return f"{100 * value:.1f} %"
    if unit == "percent":
        return f"{value:,.0f} %"
    if unit == "usd":
        return f"${value:,.2f}" if abs(value) < 100 else f"${value:,.0f}"
    return f"{value:,.0f}"


def label(program_id: str, metric: str, dimension: str) -> str:
    """The row's name in the spec's terms: "satisfaction recovery, high impact", "email open rate"."""
    name = PROGRAM_LABELS.get((program_id, metric), LABELS.get(metric, metric))
    if dimension == "all":
        return name
    kind, _, value = dimension.partition("=")
    if kind == "channel":
        return f"{value} {name}"
    return f"{name}, {DIMENSIONS.get(kind, kind + ' {}').format(value)}"


def _sort_key(row: Mapping[str, Any]) -> tuple[int, int, str]:
    order = list(LABELS)
    metric = row["metric_name"]
    return (order.index(metric) if metric in order else len(order), row["dimension"] != "all", row["dimension"])


def metrics_lines(
    rows: Sequence[Mapping[str, Any]], lifts: Sequence[Mapping[str, Any]], programs: Mapping[str, str]
) -> list[str]:
    """The table's lines: per program (id → name, in that order), its rows that the spec gives a figure for or that
    every program reports, measured value beside the spec's; then the lift with its interval."""
    lines: list[str] = []
    lift_of = {r["program_id"]: r for r in lifts}
    for program_id, name in programs.items():
        mine = [r for r in rows if r["program_id"] == program_id]
        shown = [
            r for r in mine if r["spec_figure"] is not None or (r["metric_name"] in ALWAYS and r["dimension"] == "all")
        ]
        lines.append(f"\n== {name} ({program_id})")
        if not any(r["metric_value"] is not None for r in mine):
            lines.append("   no data yet: nothing stored, sent or converted in this program's history")
        for r in sorted(shown, key=_sort_key):
            measured = format_value(r["metric_value"], r["unit"])
            spec = "" if r["spec_figure"] is None else format_value(r["spec_figure"], r["unit"])
            period = f", {r['spec_period']}" if r.get("spec_period") else ""
            beside = f"{spec} (spec{period})" if spec else ""
            lines.append(f"   {label(program_id, r['metric_name'], r['dimension']):<44}{measured:>14}   {beside}")
        lift = lift_of.get(program_id)
        if lift is not None and lift["lift"] is not None:
            lines.append(
                f"   {'lift vs holdout (95 % interval)':<44}{100 * lift['lift']:>+12.1f}pp   "
                f"[{100 * lift['lift_ci_low']:+.1f}, {100 * lift['lift_ci_high']:+.1f}] pp, "
                f"{lift['treated_n']:,} treated / {lift['control_n']:,} held out"
            )
    return lines


def print_program_metrics(defs: dg.Definitions, programs: Iterable[Any]) -> None:
    """Print each program's metrics (ProgramConfig-like: programId, programName) from the warehouse the definitions'
    `warehouse` resource reads; says so instead of failing when the metric models are not there."""
    names = {p.programId: p.programName for p in programs}
    print("\nMetrics in the spec's terms (metrics.program_metrics; spec figures: seed spec_metric_figures)")
    warehouse = (defs.resources or {}).get("warehouse")
    try:
        with dg.build_resources({"warehouse": warehouse}) as resources:
            metrics, lifts = resources.warehouse.query_arrow_many([METRICS_SQL, LIFT_SQL])
    except Exception as error:  # a warehouse without the metric models (a failed build): say so, the run stands
        print(f"   no metrics: the metric models could not be read ({type(error).__name__}: {error})")
        return
    for line in metrics_lines(metrics.to_pylist(), lifts.to_pylist(), names):
        print(line)
