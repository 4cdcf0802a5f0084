"""The reports' charts as Vega-Lite specifications, rendered to PNG in process by `vl-convert` (no browser).

Each chart function takes the metric models' rows (`data.MetricTables`) and returns a spec, or None when it has
nothing to draw: an empty chart is never drawn, the report says "no data yet" in its place.  A chart with a
`program` column compares programs (the dashboard); without, it is one program's.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import vl_convert

from engage_assets.domain.reports.data import FUNNEL_STAGES, MetricTables, funnel_cut

Spec = dict[str, Any]
SCHEMA_URL = "https://vega.github.io/schema/vega-lite/v5.json"
WIDTH = 560
# Rates and ROI are ratios in the metric models (0.25 is 25 %): the axes show them as percentages.
PCT = ",.0%"
CONFIG: Spec = {
    "font": "Helvetica, Arial, sans-serif",
    "axis": {"labelFontSize": 12, "titleFontSize": 13, "titleFontWeight": "normal"},
    "legend": {"labelFontSize": 12, "titleFontSize": 12, "orient": "bottom"},
    "title": {"fontSize": 15, "anchor": "start"},
    "view": {"stroke": None},
}
STAGE_LABELS = {
    "candidates": "Candidates",
    "offered": "Offered",
    "sent": "Sent",
    "delivered": "Delivered",
    "opened": "Opened",
    "clicked": "Clicked",
    "converted": "Converted",
}


def chart(title: str, rows: list[dict[str, Any]], body: Spec, height: int = 220) -> Spec:
    """A complete spec: title, inline rows, the shared look."""
    return {
        "$schema": SCHEMA_URL,
        "title": title,
        "width": WIDTH,
        "height": height,
        "data": {"values": rows},
        "config": CONFIG,
        **body,
    }


def rate(part: float, whole: float) -> float | None:
    """part / whole, None when there is no whole."""
    return part / whole if whole else None


def room(largest: float, factor: float) -> Spec:
    """An axis scale reaching `factor` × the largest bar: room for the labels written after the bars."""
    return {"scale": {"domainMax": largest * factor, "nice": False}}


def stage_totals(funnel: pa.Table) -> dict[str, int]:
    """The funnel's stages, the programs' totals summed."""
    totals = funnel_cut(funnel, None)
    return {s: int(sum(v or 0 for v in totals.column(s).to_pylist())) for s in FUNNEL_STAGES}


def funnel_chart(funnel: pa.Table) -> Spec | None:
    """One program's funnel: each stage's count, labelled with its share of the candidates."""
    totals = stage_totals(funnel)
    if not totals["candidates"] and not totals["sent"]:
        return None
    base = totals["candidates"] or totals["sent"]
    rows = [
        {"stage": STAGE_LABELS[s], "order": i, "count": n, "label": f"{n:,} ({n / base:.1%})"}
        for i, (s, n) in enumerate(totals.items())
    ]
    y = {"field": "stage", "type": "nominal", "sort": {"field": "order"}, "title": None}
    x = {"field": "count", "type": "quantitative", "title": "Customers", "axis": {"format": ",d"}, **room(base, 1.3)}
    return chart(
        "Funnel: customers at each stage (share of candidates)",
        rows,
        {
            "encoding": {"y": y, "x": x},
            "layer": [
                {"mark": {"type": "bar", "color": "#4c78a8"}},
                {
                    "mark": {"type": "text", "align": "left", "dx": 4, "fontSize": 12},
                    "encoding": {"text": {"field": "label"}},
                },
            ],
        },
    )


def funnel_share_chart(funnel: pa.Table, names: dict[str, str]) -> Spec | None:
    """Every program's funnel as shares of its candidates, stage by stage."""
    rows = []
    for pid in sorted(set(funnel.column("program_id").to_pylist())):
        totals = stage_totals(funnel.filter(pc.equal(funnel.column("program_id"), pid)))
        base = totals["candidates"] or totals["sent"]
        rows += [
            {"stage": STAGE_LABELS[s], "order": i, "share": n / base, "program": names.get(pid, pid)}
            for i, (s, n) in enumerate(totals.items())
            if base
        ]
    if not rows:
        return None
    return chart(
        "Funnel: share of each program's candidates at each stage",
        rows,
        {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "x": {
                    "field": "stage",
                    "type": "nominal",
                    "sort": {"field": "order"},
                    "title": None,
                    "axis": {"labelAngle": 0},
                },
                "xOffset": {"field": "program", "type": "nominal"},
                "y": {
                    "field": "share",
                    "type": "quantitative",
                    "title": "Share of candidates",
                    "axis": {"format": PCT},
                },
                "color": {"field": "program", "type": "nominal", "title": "Program"},
            },
        },
    )


def segment_chart(funnel: pa.Table, names: dict[str, str] | None = None) -> Spec | None:
    """Candidates per segment, labelled with the segment's conversion rate (given `names`: every program's
    segments, named `program · segment`)."""
    sums: dict[str, list[int]] = {}
    columns = ("program_id", "segment", "candidates", "sent", "converted")
    segments = funnel_cut(funnel, "segment")
    for pid, seg, cand, sent, conv in zip(*(segments.column(c).to_pylist() for c in columns), strict=True):
        label = str(seg or "(none)") if names is None else f"{names.get(pid, pid)} · {seg or '(none)'}"
        acc = sums.setdefault(label, [0, 0, 0])
        acc[0] += cand or 0
        acc[1] += sent or 0
        acc[2] += conv or 0
    if not any(v[0] for v in sums.values()):
        return None
    rows = [
        {
            "segment": s,
            "candidates": c,
            "label": f"{c:,}  ·  converted {r:.1%} of sent" if (r := rate(v, n)) is not None else f"{c:,}",
        }
        for s, (c, n, v) in sums.items()
    ]
    return chart(
        "Segments: candidates per segment",
        rows,
        {
            "encoding": {
                "y": {"field": "segment", "type": "nominal", "title": None, "sort": "-x"},
                "x": {
                    "field": "candidates",
                    "type": "quantitative",
                    "title": "Candidates",
                    "axis": {"format": ",d"},
                    **room(max(c for c, _, _ in sums.values()), 1.6),
                },
            },
            "layer": [
                {"mark": {"type": "bar", "color": "#72b7b2"}},
                {
                    "mark": {"type": "text", "align": "left", "dx": 4, "fontSize": 12},
                    "encoding": {"text": {"field": "label"}},
                },
            ],
        },
        height=max(80, 36 * len(rows)),
    )


CHANNEL_RATES = (
    ("Delivery rate (of sent)", "delivered", "sent"),
    ("Open rate (of delivered)", "opened", "delivered"),
    ("Click rate (of delivered)", "clicked", "delivered"),
    ("Conversion rate (of sent)", "converted", "sent"),
)


def channel_sums(funnel: pa.Table, key: str) -> dict[tuple[str, str], dict[str, int]]:
    """{(key value, channel): {stage: count}} over the other columns."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for row in funnel_cut(funnel, "channel").to_pylist():
        acc = out.setdefault((str(row[key]), str(row["channel"] or "(none)")), dict.fromkeys(FUNNEL_STAGES, 0))
        for s in FUNNEL_STAGES:
            acc[s] += row[s] or 0
    return out


def channel_chart(funnel: pa.Table, names: dict[str, str] | None = None) -> Spec | None:
    """Channel performance: one program's delivery, open, click and conversion rates per channel; or (by_program)
    each program's conversion rate per channel (given `names`, {program id: name}: the dashboard)."""
    by_program = names is not None
    rows = []
    for (program, channel), n in channel_sums(funnel, "program_id").items():
        for name, part, whole in CHANNEL_RATES[-1:] if by_program else CHANNEL_RATES:
            if (r := rate(n[part], n[whole])) is not None:
                rows.append(
                    {
                        "channel": channel,
                        "series": (names or {}).get(program, program) if by_program else name,
                        "rate": r,
                    }
                )
    if not rows:
        return None
    legend = "Program" if by_program else None
    order = sorted({str(r["series"]) for r in rows}) if by_program else [name for name, _, _ in CHANNEL_RATES]
    title = "Channels: conversion rate (of sent) per program" if by_program else "Channels: performance per channel"
    return chart(
        title,
        rows,
        {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "x": {"field": "channel", "type": "nominal", "title": "Channel", "axis": {"labelAngle": 0}},
                "xOffset": {"field": "series", "type": "nominal", "sort": order},
                "y": {"field": "rate", "type": "quantitative", "title": "Rate", "axis": {"format": PCT}},
                "color": {"field": "series", "type": "nominal", "title": legend, "sort": order},
            },
        },
    )


def lift_chart(lift: pa.Table, names: dict[str, str]) -> Spec | None:
    """Holdout lift (treated − control conversion rate) with its 95 % interval, one row per program."""
    rows = [
        {
            "program": names.get(r["program_id"], r["program_id"]),
            "lift": r["lift"],
            "low": r["lift_ci_low"],
            "high": r["lift_ci_high"],
            "label": f"{r['lift'] * 100:+.1f} pp  (95 % CI {r['lift_ci_low'] * 100:+.1f} to {r['lift_ci_high'] * 100:+.1f})",
        }
        for r in lift.to_pylist()
        if r["lift"] is not None and r["lift_ci_low"] is not None and r["lift_ci_high"] is not None
    ]
    if not rows:
        return None
    y = {"field": "program", "type": "nominal", "title": None}
    x_title = "Lift: treated − control conversion rate (percentage points, 95 % interval)"
    return chart(
        "Holdout lift with its 95 % interval",
        rows,
        {
            "layer": [
                {
                    "mark": {"type": "rule", "color": "#888", "strokeDash": [4, 4]},
                    "data": {"values": [{"zero": 0}]},
                    "encoding": {"x": {"field": "zero", "type": "quantitative"}},
                },
                {
                    "mark": {"type": "rule", "strokeWidth": 3, "color": "#4c78a8"},
                    "encoding": {
                        "y": y,
                        "x": {"field": "low", "type": "quantitative", "title": x_title, "axis": {"format": ".1%"}},
                        "x2": {"field": "high"},
                    },
                },
                {
                    "mark": {"type": "point", "filled": True, "size": 90, "color": "#e45756"},
                    "encoding": {"y": y, "x": {"field": "lift", "type": "quantitative"}},
                },
                {
                    "mark": {"type": "text", "dy": -14, "fontSize": 12},
                    "encoding": {"y": y, "x": {"field": "lift", "type": "quantitative"}, "text": {"field": "label"}},
                },
            ],
        },
        height=max(90, 60 * len(rows)),
    )


def roi_chart(daily: pa.Table, names: dict[str, str]) -> Spec | None:
    """ROI per day (revenue / cost; the model writes it in percent), one line per program."""
    rows = [
        {
            "date": r["metric_date"].isoformat(),
            "roi": r["roi"] / 100,
            "program": names.get(r["program_id"], r["program_id"]),
        }
        for r in daily.to_pylist()
        if r["roi"] is not None
    ]
    if not rows:
        return None
    return chart(
        "ROI over time",
        rows,
        {
            "mark": {"type": "line", "point": {"size": 50}, "tooltip": True},
            "encoding": {
                "x": {
                    "field": "date",
                    "type": "ordinal",
                    "timeUnit": "utcyearmonthdate",
                    "title": "Day",
                    "axis": {"format": "%b %d", "labelAngle": 0, "labelOverlap": True},
                },
                "y": {"field": "roi", "type": "quantitative", "title": "ROI (revenue / cost)", "axis": {"format": PCT}},
                "color": {
                    "field": "program",
                    "type": "nominal",
                    "title": "Program",
                    "legend": {} if len({r["program"] for r in rows}) > 1 else None,
                },
            },
        },
    )


def program_charts(tables: MetricTables, names: dict[str, str]) -> dict[str, Spec | None]:
    """One program's charts, by name (None: nothing to draw)."""
    return {
        "Funnel": funnel_chart(tables.funnel),
        "Segment distribution": segment_chart(tables.funnel),
        "Channel performance": channel_chart(tables.funnel),
        "Lift": lift_chart(tables.lift, names),
        "ROI over time": roi_chart(tables.daily, names),
    }


def dashboard_charts(tables: MetricTables, names: dict[str, str]) -> dict[str, Spec | None]:
    """Every program side by side."""
    return {
        "Lift": lift_chart(tables.lift, names),
        "ROI over time": roi_chart(tables.daily, names),
        "Funnel": funnel_share_chart(tables.funnel, names),
        "Segment distribution": segment_chart(tables.funnel, names),
        "Channel performance": channel_chart(tables.funnel, names),
    }


def render_png(spec: Spec, scale: float = 1.0) -> bytes:
    """The chart as PNG bytes (vl-convert: Vega in an embedded engine, no browser, no network)."""
    return bytes(vl_convert.vegalite_to_png(spec, scale=scale))
