"""The metric models a report reads, as Arrow tables: `program_daily_metrics`, `program_funnel`, `holdout_lift`,
`program_metrics` and `touch_attribution` (summed per program, channel and attribution model), in the warehouse
schema `metrics` (dbt's `models/metrics`).

A model that is not in the warehouse yet (dbt has not built it) reads as an empty table of its contract's columns,
and is named in `MetricTables.missing`, so a report says "no data yet" instead of failing.  The SQL is plain
enough for DuckDB, Snowflake and Athena alike (`information_schema`, `GROUP BY` positions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

METRICS_SCHEMA = "metrics"

DAILY_COUNTS = ("sent", "delivered", "opened", "clicked", "converted")
DAILY_FIGURES = (*DAILY_COUNTS, "cost_usd", "revenue_usd", "roi")
FUNNEL_STAGES = ("candidates", "offered", "sent", "delivered", "opened", "clicked", "converted")

SCHEMAS: dict[str, pa.Schema] = {
    "program_daily_metrics": pa.schema(
        [("metric_date", pa.date32()), ("program_id", pa.string())]
        + [(c, pa.int64()) for c in DAILY_COUNTS]
        + [("cost_usd", pa.float64()), ("revenue_usd", pa.float64()), ("roi", pa.float64())]
    ),
    "program_funnel": pa.schema(
        [("program_id", pa.string()), ("segment", pa.string()), ("channel", pa.string())]
        + [(c, pa.int64()) for c in FUNNEL_STAGES]
    ),
    "holdout_lift": pa.schema(
        [
            ("program_id", pa.string()),
            ("treated_n", pa.int64()),
            ("treated_conversions", pa.int64()),
            ("treated_rate", pa.float64()),
            ("control_n", pa.int64()),
            ("control_conversions", pa.int64()),
            ("control_rate", pa.float64()),
            ("lift", pa.float64()),
            ("lift_ci_low", pa.float64()),
            ("lift_ci_high", pa.float64()),
        ]
    ),
    "program_metrics": pa.schema(
        [
            ("program_id", pa.string()),
            ("metric_name", pa.string()),
            ("dimension", pa.string()),
            ("metric_value", pa.float64()),
            ("spec_figure", pa.float64()),
            ("unit", pa.string()),
            ("spec_period", pa.string()),  # optional: 'per day', 'per year'; NULL for rates
        ]
    ),
    # touch_attribution summed: conversions and their value per program, channel and attribution model.
    "touch_attribution": pa.schema(
        [
            ("program_id", pa.string()),
            ("channel", pa.string()),
            ("attribution_model", pa.string()),
            ("conversions", pa.int64()),
            ("value_usd", pa.float64()),
        ]
    ),
}

QUERIES = {
    "program_daily_metrics": "SELECT {cols} FROM {schema}.program_daily_metrics ORDER BY program_id, metric_date",
    "program_funnel": "SELECT {cols} FROM {schema}.program_funnel ORDER BY program_id, segment, channel",
    "holdout_lift": "SELECT {cols} FROM {schema}.holdout_lift ORDER BY program_id",
    "program_metrics": "SELECT {cols} FROM {schema}.program_metrics ORDER BY program_id, metric_name, dimension",
    "touch_attribution": "SELECT program_id, channel, attribution_model, COUNT(*) AS conversions, "
    "SUM(value_usd) AS value_usd FROM {schema}.touch_attribution GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
}

COLUMNS = (
    "SELECT lower(table_name) AS table_name, lower(column_name) AS column_name FROM information_schema.columns "
    "WHERE lower(table_schema) = '{schema}'"
)
# The columns a model's query reads (touch_attribution's sum reads these, not every contract column).
READS = {"touch_attribution": ("program_id", "channel", "attribution_model", "value_usd")}
# Columns a model may lack (read as NULL): added to the contract later.
OPTIONAL = frozenset({"spec_period"})

# Runs the queries (SQL text only, no parameters) and returns one Arrow table each: `WarehouseResource.query_arrow_many`.
QueryMany = Callable[[Sequence[str]], list[pa.Table]]


class MetricDataError(ValueError):
    """A metric model in the warehouse lacks a column of its contract."""


@dataclass(frozen=True)
class MetricTables:
    """The metric models' rows, each in its contract's schema; `missing` the models the warehouse lacks."""

    daily: pa.Table
    funnel: pa.Table
    lift: pa.Table
    metrics: pa.Table
    attribution: pa.Table
    missing: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, tables: Sequence[pa.Table], missing: Sequence[str] = ()) -> MetricTables:
        """From the five tables in `SCHEMAS`' order."""
        daily, funnel, lift, metrics, attribution = tables
        return cls(daily, funnel, lift, metrics, attribution, missing=tuple(missing))

    def tables(self) -> dict[str, pa.Table]:
        """{model name: table}."""
        return dict(zip(SCHEMAS, (self.daily, self.funnel, self.lift, self.metrics, self.attribution), strict=True))

    def for_program(self, program_id: str) -> MetricTables:
        """Only the rows of one program."""
        rows = [t.filter(pc.equal(t.column("program_id"), program_id)) for t in self.tables().values()]
        return MetricTables.of(rows, self.missing)

    def on_day(self, day: date) -> pa.Table:
        """The daily metrics of one day, every program."""
        return self.daily.filter(pc.equal(self.daily.column("metric_date"), pa.scalar(day, pa.date32())))

    @property
    def measured(self) -> bool:
        """Anything measured yet: a day's figures, an attributed conversion, a candidate or touch in the funnel, a
        holdout comparison, a metric value (the models write zero and NULL rows for a program with no data)."""

        def positive(t: pa.Table, column: str) -> bool:
            return any((v or 0) > 0 for v in t.column(column).to_pylist())

        return (
            self.daily.num_rows > 0
            or self.attribution.num_rows > 0
            or positive(self.funnel, "candidates")
            or positive(self.funnel, "sent")
            or positive(self.lift, "treated_n")
            or self.metrics.column("metric_value").null_count < self.metrics.num_rows
        )


ALL = "all"


def funnel_cut(funnel: pa.Table, by: str | None) -> pa.Table:
    """One cut of the funnel, program by program: the program totals (`by` None: segment and channel 'all'), one row
    per segment (channel 'all') or one per channel (segment 'all').  The model writes these total rows (a channel's
    row carries its segment's candidates, so rows are never summed across channels); a program without them (only
    the finest rows) is summed to the cut."""
    parts = [
        cut_of_program(funnel.filter(pc.equal(funnel.column("program_id"), pid)), by)
        for pid in dict.fromkeys(funnel.column("program_id").to_pylist())
    ]
    return pa.concat_tables(parts) if parts else funnel


def cut_of_program(funnel: pa.Table, by: str | None) -> pa.Table:
    """`funnel_cut` of one program's rows."""
    seg_all, ch_all = pc.equal(funnel.column("segment"), ALL), pc.equal(funnel.column("channel"), ALL)
    if pc.any(pc.or_kleene(seg_all, ch_all)).as_py():
        masks = {
            None: pc.and_(seg_all, ch_all),
            "segment": pc.and_(pc.invert(seg_all), ch_all),
            "channel": pc.and_(seg_all, pc.invert(ch_all)),
        }
        return funnel.filter(masks[by])
    keys = ["program_id", *([by] if by else [])]
    summed = funnel.group_by(keys, use_threads=False).aggregate([(s, "sum") for s in FUNNEL_STAGES])
    columns = {k: summed.column(k) for k in keys} | {s: summed.column(f"{s}_sum") for s in FUNNEL_STAGES}
    for k in ("segment", "channel"):
        columns.setdefault(k, pa.array([ALL] * summed.num_rows, pa.string()))
    return pa.Table.from_pydict(columns).select(SCHEMAS["program_funnel"].names).cast(SCHEMAS["program_funnel"])


def conform(name: str, table: pa.Table) -> pa.Table:
    """`table` in the contract's column order and types (a warehouse may upper-case names, or type counts as
    decimals or int32); an optional column it lacks is NULL, a required one a clear error naming it."""
    schema = SCHEMAS[name]
    by_lower = {c.lower(): c for c in table.column_names}
    absent = [f.name for f in schema if f.name not in by_lower and f.name not in OPTIONAL]
    if absent:
        raise MetricDataError(f"{METRICS_SCHEMA}.{name} lacks the contract's column(s): {', '.join(absent)}")
    columns = [
        table.column(by_lower[f.name]).cast(f.type) if f.name in by_lower else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def read_metric_tables(query_many: QueryMany, schema: str = METRICS_SCHEMA) -> MetricTables:
    """Every metric model the warehouse has (one round of queries); the others empty and named in `missing`."""
    (found,) = query_many([COLUMNS.format(schema=schema)])
    columns: dict[str, set[str]] = {}
    for table, column in zip(*(found.column(i).to_pylist() for i in (0, 1)), strict=True):
        columns.setdefault(str(table), set()).add(str(column))
    names = [n for n in SCHEMAS if n in columns]
    for n in names:
        absent = [c for c in READS.get(n, SCHEMAS[n].names) if c not in columns[n] and c not in OPTIONAL]
        if absent:
            raise MetricDataError(f"{schema}.{n} lacks the contract's column(s): {', '.join(absent)}")
    sql = [
        QUERIES[n].format(schema=schema, cols=", ".join(c for c in SCHEMAS[n].names if c in columns[n])) for n in names
    ]
    read = dict(zip(names, query_many(sql) if sql else [], strict=True))
    tables = [conform(n, read[n]) if n in read else SCHEMAS[n].empty_table() for n in SCHEMAS]
    return MetricTables.of(tables, [n for n in SCHEMAS if n not in columns])
