"""What each report holds, from the metric models' rows: a program's report, the dashboard over every program, and
the day's report the 23:59 aggregation writes.  Numbers are written as a person reads them: dollars with a `$`,
rates and ROI as percentages, lift in percentage points with its 95 % interval, counts with thousands separators."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain.reports.charts import dashboard_charts, program_charts, stage_totals
from engage_assets.domain.reports.data import DAILY_FIGURES, MetricTables
from engage_assets.domain.reports.render import NO_DATA, Report, Section, Table, chart_section

# program_metrics.unit: `rate` a fraction (0.85 is 85 %), `percent` already ×100 (ROI), `usd`, `count`.
USD_UNITS = {"usd"}
RATE_UNITS = {"rate"}
PERCENT_UNITS = {"percent"}
COUNT_UNITS = {"count"}
NOT_MEASURED = "no data"
CHART_NEEDS = {
    "Funnel": "the funnel (metrics.program_funnel) has no candidate of this program",
    "Segment distribution": "the funnel (metrics.program_funnel) has no candidate of this program",
    "Channel performance": "nothing was sent through any channel (metrics.program_funnel)",
    "Lift": "no holdout lift measured yet (metrics.holdout_lift)",
    "ROI over time": "no day with cost and revenue yet (metrics.program_daily_metrics)",
}


def usd(v: float | None) -> str:
    """$1,234.56 (whole dollars from $10,000 up)."""
    if v is None:
        return "–"
    return f"-${-v:,.0f}" if v <= -10_000 else f"${v:,.0f}" if v >= 10_000 else f"${v:,.2f}".replace("$-", "-$")


def pct(v: float | None, digits: int = 1) -> str:
    """A ratio as a percentage: 0.2125 → 21.3 %."""
    return "–" if v is None else f"{v * 100:,.{digits}f} %"


def count(v: float | None) -> str:
    """1,234."""
    return "–" if v is None else f"{v:,.0f}"


def points(v: float | None) -> str:
    """A difference of rates in percentage points: 0.031 → +3.1 pp."""
    return "–" if v is None else f"{v * 100:+.1f} pp"


def value(v: float | None, unit: str | None, missing: str = NOT_MEASURED) -> str:
    """A metric value by its unit (program_metrics.unit); `missing` when there is none."""
    u = (unit or "").strip().lower()
    if v is None:
        return missing
    if u in USD_UNITS:
        return usd(v)
    if u in RATE_UNITS:
        return pct(v)
    if u in PERCENT_UNITS:
        return f"{v:,.0f} %" if abs(v) >= 100 else f"{v:,.1f} %"
    if u in COUNT_UNITS:
        return count(v)
    return f"{v:,.4g}" + (f" {unit}" if unit else "")


def title_of(metric_name: str) -> str:
    """satisfaction_recovery_rate → Satisfaction recovery rate (usd → USD, roi → ROI)."""
    words = metric_name.split("_")
    text = " ".join([words[0].capitalize(), *words[1:]]).replace("inback", "in-back")
    return text.replace(" usd", " (USD)").replace("Roi", "ROI").replace(" roi", " ROI")


def spec_table(metrics: pa.Table, names: Mapping[str, str] | None = None) -> Table:
    """The spec's metrics by name, measured beside the spec's asserted figure (given `names`: a Program column)."""
    rows = []
    for r in metrics.to_pylist():
        dim = "" if r["dimension"] in (None, "", "all") else str(r["dimension"]).replace("=", ": ")
        spec = value(r["spec_figure"], r["unit"], missing="–")
        spec += f" {r['spec_period']}" if r["spec_figure"] is not None and r["spec_period"] else ""
        row = [title_of(r["metric_name"]), dim, value(r["metric_value"], r["unit"]), spec]
        rows.append(([names.get(r["program_id"], r["program_id"])] if names is not None else []) + row)
    headers = ["Metric", "Dimension", "Measured", "Spec asserts"]
    lead = ["Program"] if names is not None else []
    return Table([*lead, *headers], rows, numeric=frozenset({len(lead) + 2, len(lead) + 3}))


def lift_table(lift: pa.Table, names: Mapping[str, str]) -> Table:
    """Treated against control, with the difference and its 95 % interval."""
    rows = [
        [
            names.get(r["program_id"], r["program_id"]),
            f"{count(r['treated_conversions'])} / {count(r['treated_n'])}",
            pct(r["treated_rate"], 2),
            f"{count(r['control_conversions'])} / {count(r['control_n'])}",
            pct(r["control_rate"], 2),
            points(r["lift"]),
            "–" if r["lift_ci_low"] is None else f"{points(r['lift_ci_low'])} to {points(r['lift_ci_high'])}",
        ]
        for r in lift.to_pylist()
    ]
    headers = ["Program", "Treated converted", "Treated rate", "Control converted", "Control rate", "Lift", "95 % CI"]
    return Table(headers, rows, numeric=frozenset(range(1, 7)))


def funnel_table(funnel: pa.Table) -> Table:
    """The funnel's stages (the program's totals) with each one's share of the candidates."""
    totals = stage_totals(funnel)
    base = totals["candidates"]
    rows = [[s.capitalize(), count(n), pct(n / base) if base else "–"] for s, n in totals.items()]
    return Table(["Stage", "Customers", "Share of candidates"], rows, numeric=frozenset({1, 2}))


def daily_table(daily: pa.Table, names: Mapping[str, str] | None = None, last: int = 14) -> Table:
    """Daily figures (the last `last` days; given `names`, a Program column and every row)."""
    rows = []
    for r in daily.to_pylist()[-last if names is None else 0 :]:
        row = [r["metric_date"].isoformat()] + [count(r[c]) for c in DAILY_FIGURES[:5]]
        row += [usd(r["cost_usd"]), usd(r["revenue_usd"]), "–" if r["roi"] is None else f"{r['roi']:,.0f} %"]
        rows.append(([names.get(r["program_id"], r["program_id"])] if names is not None else []) + row)
    lead = ["Program"] if names is not None else []
    headers = [*lead, "Day", "Sent", "Delivered", "Opened", "Clicked", "Converted", "Cost", "Revenue", "ROI"]
    return Table(headers, rows, numeric=frozenset(range(len(lead) + 1, len(headers))))


def no_data_note(tables: MetricTables, whom: str) -> str:
    """Why there is nothing to show yet."""
    why = (
        f"the warehouse has no metric model yet ({', '.join('metrics.' + m for m in tables.missing)})"
        if tables.missing
        else f"nothing has been measured for {whom}"
    )
    return (
        f"{NO_DATA}: {why}. The figures appear once touches were sent, their outcomes and the conversions came back, "
        "and dbt built models/metrics (the warehouse build)."
    )


def not_measured(
    mine: MetricTables, tables: MetricTables, whom: str, names: Mapping[str, str] | None = None
) -> list[Section]:
    """A report of nothing measured yet: says so, and lists the spec's figures that will be measured."""
    sections = [Section(NO_DATA, note=no_data_note(tables, whom))]
    if mine.metrics.num_rows:
        sections.append(Section("Spec metrics (to be measured)", table=spec_table(mine.metrics, names)))
    return sections


def program_report(program_id: str, name: str, tables: MetricTables, as_of: str) -> Report:
    """One program's report: the spec's metrics, lift, funnel, daily figures and the five charts."""
    mine = tables.for_program(program_id)
    subtitle = f"Program {program_id} · measured from the warehouse's metric models · {as_of}"
    if not mine.measured:
        return Report(f"{name}: report", subtitle, not_measured(mine, tables, "this program"))
    names = {program_id: name}
    sections = [
        Section("Spec metrics", table=spec_table(mine.metrics)) if mine.metrics.num_rows else None,
        Section("Holdout lift", table=lift_table(mine.lift, names)) if mine.lift.num_rows else None,
        Section("Funnel (all days)", table=funnel_table(mine.funnel)) if mine.funnel.num_rows else None,
        Section("Attributed conversions by channel", table=attribution_table(mine.attribution))
        if mine.attribution.num_rows
        else None,
        Section("Daily figures (last 14 days)", table=daily_table(mine.daily)) if mine.daily.num_rows else None,
    ]
    charts = [chart_section(t, spec, CHART_NEEDS[t]) for t, spec in program_charts(mine, names).items()]
    return Report(f"{name}: report", subtitle, [s for s in sections if s is not None] + charts)


def dashboard(names: Mapping[str, str], tables: MetricTables, as_of: str) -> Report:
    """Every program side by side: lift, daily figures, the spec's metrics, the charts."""
    subtitle = f"{len(names)} programs · measured from the warehouse's metric models · {as_of}"
    keep = pa.array(list(names), pa.string())
    ours = MetricTables.of(
        [t.filter(pc.is_in(t.column("program_id"), keep)) for t in tables.tables().values()], tables.missing
    )
    if not ours.measured:
        return Report("Engage dashboard", subtitle, not_measured(ours, tables, "any program", names))
    # Only the figures the spec asserts (the per-channel rates and the rest are in each program's report).
    asserted = ours.metrics.filter(pc.is_valid(ours.metrics.column("spec_figure")))
    sections = [
        Section("Holdout lift", table=lift_table(ours.lift, names)) if ours.lift.num_rows else None,
        Section("The spec's figures, measured", table=spec_table(asserted, names)) if asserted.num_rows else None,
    ]
    charts = [
        chart_section(t, s, CHART_NEEDS[t].replace("this program", "any program"))
        for t, s in dashboard_charts(ours, dict(names)).items()
    ]
    return Report("Engage dashboard", subtitle, [s for s in sections if s is not None] + charts)


def daily_report(day: date, names: Mapping[str, str], tables: MetricTables, as_of: str) -> Report:
    """The day's figures of every program (the 23:59 aggregation's report)."""
    rows = tables.on_day(day)
    subtitle = f"Metric date {day.isoformat()} · {as_of}"
    if not rows.num_rows:
        note = (
            no_data_note(tables, f"{day.isoformat()}")
            if tables.missing
            else f"{NO_DATA}: no program has figures for {day.isoformat()}."
        )
        return Report(f"Daily metrics {day.isoformat()}", subtitle, [Section(NO_DATA, note=note)])
    quiet = [n for pid, n in names.items() if pid not in set(rows.column("program_id").to_pylist())]
    note = f"No figures on this day for: {', '.join(quiet)} (nothing sent, cost or converted)." if quiet else ""
    return Report(
        f"Daily metrics {day.isoformat()}", subtitle, [Section("Programs", note=note, table=daily_table(rows, names))]
    )


def attribution_table(attribution: pa.Table) -> Table:
    """Conversions attributed to each channel's touches, last touch beside first touch."""
    cells: dict[str, dict[str, tuple[int, float]]] = {}
    for r in attribution.to_pylist():
        cells.setdefault(str(r["channel"]), {})[str(r["attribution_model"])] = (r["conversions"], r["value_usd"])
    rows = []
    for channel, by_model in sorted(cells.items()):
        last, first = by_model.get("last_touch", (0, 0.0)), by_model.get("first_touch", (0, 0.0))
        rows.append([channel, count(last[0]), usd(last[1]), count(first[0]), usd(first[1])])
    headers = [
        "Channel",
        "Last touch: conversions",
        "Last touch: value",
        "First touch: conversions",
        "First touch: value",
    ]
    return Table(headers, rows, numeric=frozenset(range(1, 5)))
