"""Source stage: the connector query for one partition, enriched with customer context and offer history.

The SQL itself is built by `domain.pushdown` (run inside the warehouse); this module holds the rules it follows, the
drift check, and the Arrow forms of the validation that the event path and the tests use.

The program's query (its `dataConnectors[0].config.query`) runs as written, with the partition's dates bound
as parameters; the platform then adds what the filters and models need but the query does not select: the
customer's profile and consent from `marts.customers` and look-back counts from `marts.offer_history`, all
relative to the partition's as-of date so a backfill of any past date sees that day's history.

Look-back windows count days back from the as-of date (`as_of_date − offer_date`; the as-of date is the
partition's end, the day after a daily partition's day): "the last N days" is offers 1 to N days back, so
`program_offers_365d` counts 365 days and `all_offers_91d` 91, and the eligibility filter's 90-day look-back
(`days_since_program_offer > 90`) excludes an offer 90 days back and not one 91 days back.  Offers dated on or after
the as-of date are not history yet.

Schema drift (a required column missing or of another type) fails before anything is read in bulk or stored.
A row is rejected at the source, with a reason, counted, never failing the partition, when its customer is not in
`marts.customers` or a required value is NULL (NaN counts as NULL) — except in a column the filter chain reads:
there the filter's rule decides, NULL-aware, whether it needs the value for that row (`domain.filters`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain.config import ColumnType, ProgramConfig

# Set by the enrichment join: false when the row's customer is not in marts.customers (dropped by split_invalid).
KNOWN_CUSTOMER = "__known_customer"
UNKNOWN_CUSTOMER_REASON = "customer not found in marts.customers"


class SchemaDriftError(RuntimeError):
    """The source no longer returns a required column, or returns it with another type."""


@dataclass(frozen=True)
class PartitionWindow:
    partition_key: str
    start: date
    end: date

    def params(self, program_id: str) -> dict[str, Any]:
        return {
            "partition_start": self.start,
            "partition_end": self.end,
            "as_of_date": self.end,
            "program_id": program_id,
        }


def _matches(arrow_type: pa.DataType, expected: ColumnType) -> bool:
    if pa.types.is_null(arrow_type):  # an all-NULL column carries no type: judged row by row instead
        return True
    checks = {
        "string": lambda t: (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_string_view(t)
            or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))
        ),
        "integer": pa.types.is_integer,
        "number": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t),
        "boolean": pa.types.is_boolean,
        "date": pa.types.is_date,
        "timestamp": pa.types.is_timestamp,
    }
    return checks[expected](arrow_type)


def check_schema(schema: pa.Schema, required: Mapping[str, ColumnType], where: str) -> None:
    """Raise SchemaDriftError naming every missing or retyped required column."""
    problems = []
    for name, expected in required.items():
        idx = schema.get_field_index(name)
        if idx < 0:
            problems.append(f"column {name!r} is missing")
        elif not _matches(schema.field(idx).type, expected):
            problems.append(f"column {name!r} is {schema.field(idx).type}, expected {expected}")
    if problems:
        raise SchemaDriftError(f"schema drift in {where}: " + "; ".join(problems))


def probe_sql(program: ProgramConfig) -> str:
    """The connector query with no rows: its columns and types, for the drift check."""
    query = program.connector.config.query.strip().rstrip(";")
    return f"SELECT * FROM (\n{query}\n) AS probe LIMIT 0"


def nan_to_null(table: pa.Table) -> pa.Table:
    """Floating columns with NaN replaced by NULL: SQL orders NaN above every number (`NaN >= 200` is true), so an
    unknown number must be NULL before any threshold sees it."""
    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            col = table.column(i)
            nan = pc.is_nan(col)
            if pc.any(nan).as_py():
                table = table.set_column(i, field, pc.if_else(nan, pa.scalar(None, field.type), col))
    return table


def split_invalid(
    table: pa.Table, required: Mapping[str, ColumnType], judged: Collection[str] = ()
) -> tuple[pa.Table, pa.Table]:
    """Valid rows, and the others with `rejection_reason`: an unknown customer, or the first required column that
    is NULL (or NaN).  A required column in `judged` (the filter chain reads it) is left to the filter's rule, which
    knows whether the row needs the value.  NULL-safe throughout: a NULL never passes for a value."""
    table = nan_to_null(table)
    reason = pa.nulls(table.num_rows, pa.string())
    if KNOWN_CUSTOMER in table.column_names:
        unknown = pc.invert(pc.fill_null(table.column(KNOWN_CUSTOMER), False))
        reason = pc.if_else(unknown, pa.scalar(UNKNOWN_CUSTOMER_REASON), reason)
        table = table.drop_columns([KNOWN_CUSTOMER])
    for name in required:
        if name in judged:
            continue
        bad = pc.and_kleene(pc.is_null(table.column(name)), pc.is_null(reason))  # never NULL itself
        reason = pc.if_else(bad, pa.scalar(f"{name} is null or not a valid {required[name]}"), reason)
    invalid = pc.is_valid(reason)
    if not pc.any(invalid).as_py():
        return table, table.slice(0, 0).append_column("rejection_reason", pa.array([], pa.string()))
    rejected = table.filter(invalid).append_column("rejection_reason", reason.filter(invalid))
    return table.filter(pc.invert(invalid)), rejected
