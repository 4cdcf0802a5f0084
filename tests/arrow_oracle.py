"""The batch programs' source and eligible stages as they ran before the push-down (issue #14): every source row
pulled into Arrow, validated there, the filter chain run by DuckDB over the Arrow table.  Kept only as the oracle
the push-down is compared with (`tests/test_pushdown_equivalence.py`): same candidates, counts and reasons."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.filters import columns_judged
from engage_assets.domain.marketplaces import MARKETPLACE_FILTER, split_marketplaces
from engage_assets.domain.source_columns import CONTEXT_COLUMNS
from engage_assets.domain.sources import KNOWN_CUSTOMER, PartitionWindow, probe_sql, split_invalid
from resources.warehouse.base import WarehouseResource


def enrichment_sql(program: ProgramConfig, source_columns: list[str]) -> str:
    """The connector query wrapped with context and history joins, as the source stage ran it before #14 (DuckDB)."""
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
         sum(CASE WHEN h.program_id = :program_id AND h.offer_date >= :as_of_date - 365 THEN 1 ELSE 0 END)
             AS program_offers_365d,
         sum(CASE WHEN h.offer_date >= :as_of_date - 91 THEN 1 ELSE 0 END) AS all_offers_91d
  FROM marts.offer_history h JOIN keys ON keys.customer_id = h.customer_id
  WHERE h.offer_date < :as_of_date
  GROUP BY h.customer_id
)
SELECT src.*{context_sql}, hist.days_since_program_offer,
       CAST(coalesce(hist.program_offers_365d, 0) AS INTEGER) AS program_offers_365d,
       CAST(coalesce(hist.all_offers_91d, 0) AS INTEGER) AS all_offers_91d,
       c.customer_id IS NOT NULL AS {KNOWN_CUSTOMER}
FROM src
LEFT JOIN marts.customers c ON c.customer_id = src.customer_id
LEFT JOIN hist ON hist.customer_id = src.customer_id
"""


def arrow_source(
    program: ProgramConfig, warehouse: WarehouseResource, erased: Collection[str], window: PartitionWindow
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """(valid rows, rejected rows, figures) of the source stage, the Arrow way."""
    params = window.params(program.programId)
    probe = warehouse.query_arrow(probe_sql(program), params)
    table = warehouse.query_arrow(enrichment_sql(program, probe.column_names), params)
    rows_read = table.num_rows
    if erased:
        gone = pa.array(sorted(erased), pa.string())
        table = table.filter(pc.invert(pc.is_in(table.column("customer_id").cast(pa.string()), gone)))
    judged = columns_judged(program.ordered_filters())
    valid, invalid = split_invalid(table, program.connector.requiredColumns, judged)
    valid, outside = split_marketplaces(valid, program.marketplaces)
    rejected = pa.concat_tables(
        [
            pipeline.source_rejections(program, invalid),
            pipeline.source_rejections(program, outside, filter_id=MARKETPLACE_FILTER),
        ]
    )
    reasons: dict[str, int] = {}
    for r in invalid.column("rejection_reason").to_pylist():
        reasons[r] = reasons.get(r, 0) + 1
    figures = {
        "dagster/row_count": valid.num_rows,
        "rows_read": rows_read,
        "excluded_erased": rows_read - table.num_rows,
        "rejected_invalid": invalid.num_rows,
        "outside_marketplaces": outside.num_rows,
        "reasons": dict(sorted(reasons.items())),
    }
    return valid, rejected, figures


def arrow_eligible(program: ProgramConfig, source: pa.Table) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """(eligible rows, rejected rows, removed per filter) of the filter chain over the Arrow table."""
    result = pipeline.apply_filter_chain(program, source)
    return result.table, result.rejected, dict(result.removed)
