"""Source stage: the connector query for one partition, enriched with customer context and offer history.

The program's query (its `dataConnectors[0].config.query`) runs as written, with the partition's dates bound
as parameters; the platform then adds what the filters and models need but the query does not select: the
customer's profile and consent from `marts.customers` and look-back counts from `marts.offer_history`, all
relative to the partition's as-of date so a backfill of any past date sees that day's history.

Schema drift (a required column missing or of another type) fails before anything is read in bulk or stored.
A row with a NULL required value is rejected with a reason and counted; it never fails the partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain.config import ColumnType, ProgramConfig

# Context the platform adds from marts.customers (never PII: no name, e-mail or phone in the batch).
CONTEXT_COLUMNS = (
    "marketplace",
    "time_zone",
    "subscription_tier",
    "account_status",
    "lifetime_value_usd",
    "order_frequency",
    "monthly_revenue_usd",
    "satisfaction_history",
    "complaint_history",
    "discount_sensitivity",
    "marketing_opt_out",
    "email_opt_in",
    "sms_opt_in",
    "push_opt_in",
    "phone_opt_in",
)
HISTORY_COLUMNS = ("days_since_program_offer", "program_offers_365d", "all_offers_91d")


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


def enrichment_sql(program: ProgramConfig, source_columns: list[str]) -> str:
    """The connector query wrapped with context and history joins (portable SQL: DuckDB and Snowflake)."""
    query = program.connector.config.query.strip().rstrip(";")
    context = [c for c in CONTEXT_COLUMNS if c not in source_columns]
    context_sql = "".join(f", c.{c}" for c in context)
    return f"""
WITH src AS (
{query}
),
keys AS (SELECT DISTINCT customer_id FROM src),
hist AS (
  SELECT h.customer_id,
         datediff('day', max(CASE WHEN h.program_id = :program_id THEN h.offer_date END), :as_of_date)
             AS days_since_program_offer,
         sum(CASE WHEN h.program_id = :program_id AND h.offer_date > :as_of_date - 365 THEN 1 ELSE 0 END)
             AS program_offers_365d,
         sum(CASE WHEN h.offer_date > :as_of_date - 91 THEN 1 ELSE 0 END) AS all_offers_91d
  FROM marts.offer_history h JOIN keys ON keys.customer_id = h.customer_id
  WHERE h.offer_date < :as_of_date
  GROUP BY h.customer_id
)
SELECT src.*{context_sql}, hist.days_since_program_offer,
       CAST(coalesce(hist.program_offers_365d, 0) AS INTEGER) AS program_offers_365d,
       CAST(coalesce(hist.all_offers_91d, 0) AS INTEGER) AS all_offers_91d
FROM src
LEFT JOIN marts.customers c ON c.customer_id = src.customer_id
LEFT JOIN hist ON hist.customer_id = src.customer_id
"""


def probe_sql(program: ProgramConfig) -> str:
    """The connector query with no rows: its columns and types, for the drift check."""
    query = program.connector.config.query.strip().rstrip(";")
    return f"SELECT * FROM (\n{query}\n) AS probe LIMIT 0"


def split_invalid(table: pa.Table, required: Mapping[str, ColumnType]) -> tuple[pa.Table, pa.Table]:
    """Valid rows, and the others with `rejection_reason` naming the first NULL/ill-typed required column."""
    reason = pa.nulls(table.num_rows, pa.string())
    for name in required:
        bad = pc.is_null(table.column(name))
        if pa.types.is_floating(table.schema.field(name).type):
            bad = pc.or_(bad, pc.is_nan(table.column(name)))
        reason = pc.if_else(
            pc.and_(bad, pc.is_null(reason)), pa.scalar(f"{name} is null or not a valid {required[name]}"), reason
        )
    invalid = pc.is_valid(reason)
    if not pc.any(invalid).as_py():
        return table, table.slice(0, 0).append_column("rejection_reason", pa.array([], pa.string()))
    rejected = table.filter(invalid).append_column("rejection_reason", reason.filter(invalid))
    return table.filter(pc.invert(invalid)), rejected
