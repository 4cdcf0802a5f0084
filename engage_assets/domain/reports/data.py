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
    def empty(self) -> bool:
        """No model holds a row (not built yet, or nothing measured yet)."""
        return all(t.num_rows == 0 for t in self.tables().values())


def conform(name: str, table: pa.Table) -> pa.Table:
    """`table` in the contract's column order and types (a warehouse may upper-case names, or type counts as
    decimals); a missing column is a clear error naming it."""
    schema = SCHEMAS[name]
    by_lower = {c.lower(): c for c in table.column_names}
    absent = [f.name for f in schema if f.name not in by_lower]
    if absent:
        raise MetricDataError(f"{METRICS_SCHEMA}.{name} lacks the contract's column(s): {', '.join(absent)}")
    columns = [table.column(by_lower[f.name]).cast(f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def read_metric_tables(query_many: QueryMany, schema: str = METRICS_SCHEMA) -> MetricTables:
    """Every metric model the warehouse has (one round of queries); the others empty and named in `missing`."""
    (found,) = query_many([COLUMNS.format(schema=schema)])
    columns: dict[str, set[str]] = {}
    for table, column in zip(*(found.column(i).to_pylist() for i in (0, 1)), strict=True):
        columns.setdefault(str(table), set()).add(str(column))
    present = set(columns)
    names = [n for n in SCHEMAS if n in present]
    for n in names:
        absent = [c for c in READS.get(n, SCHEMAS[n].names) if c not in columns[n]]
        if absent:
            raise MetricDataError(f"{schema}.{n} lacks the contract's column(s): {', '.join(absent)}")
    sql = [QUERIES[n].format(schema=schema, cols=", ".join(SCHEMAS[n].names)) for n in names]
    read = dict(zip(names, query_many(sql) if sql else [], strict=True))
    tables = [conform(n, read[n]) if n in read else SCHEMAS[n].empty_table() for n in SCHEMAS]
    return MetricTables.of(tables, [n for n in SCHEMAS if n not in present])
