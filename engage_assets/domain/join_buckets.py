"""Buckets of customers for a source statement joined bucket by bucket (`domain.pushdown.SourcePlan.valid_rows_sqls`).

The embedded warehouse (DuckDB) joins within a memory limit: one statement over a large source would run its customer
join out of core, so it runs one statement per bucket of customers, each join's hash table in memory
(`resources.warehouse.duckdb.DuckDBWarehouse.source_buckets` decides how many).  A bucket is a range of text ids when
the source's ids are text (cut at a sample's quantiles: on tables stored in customer order, each statement reads only
its own row groups), else a hash bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engage_assets.domain.sql_dialect import literal

# Every hash bucket's statement scans both tables whole, so hash buckets cost buckets x rows: past this many the
# buckets grow (and their joins spill) instead.  A range reads only its own row groups on tables stored in customer
# order, so ranges are not capped.
MAX_HASH_BUCKETS = 16


@dataclass(frozen=True)
class Bucket:
    """One of `count` buckets of customers: a source statement joined bucket by bucket keeps each join's build side
    to its bucket's rows.  With `low`/`high` (text ids) a bucket is a range of `customer_id`, [low, high), open where
    None: a warehouse whose tables are stored in customer order (the marts are) then reads only the bucket's row
    groups of each table.  Without, a hash of `customer_id` (DuckDB's `hash`; every row in exactly one bucket).
    A range holds no NULL id: no valid row has one (its customer is unknown); the rejections' statements add the
    bucket of NULL ids (`null_ids`, `NULL_IDS`)."""

    index: int
    count: int
    low: str | None = None
    high: str | None = None
    ranged: bool = False
    null_ids: bool = False

    def holds(self, alias: str) -> str:
        """The predicate of the bucket's rows of `alias`."""
        if self.null_ids:
            return f"{alias}.customer_id IS NULL"
        if not self.ranged:
            return f"coalesce(hash(CAST({alias}.customer_id AS VARCHAR)), 0) % {self.count} = {self.index}"
        parts = [f"{alias}.customer_id >= {literal(self.low)}"] if self.low is not None else []
        parts += [f"{alias}.customer_id < {literal(self.high)}"] if self.high is not None else []
        return " AND ".join(parts) or f"{alias}.customer_id IS NOT NULL"


# The rows no range holds: those without a customer id (rejected: their customer is unknown).
NULL_IDS = Bucket(0, 1, null_ids=True)


def range_bounds(sample: Sequence[str | None], buckets: int) -> list[str]:
    """The cut points of `buckets` ranges holding about as many of the `sample`'s ids each (fewer when the sample
    has fewer distinct ids): the k-th of the sorted distinct ids at each k/buckets."""
    ids = sorted({i for i in sample if i is not None})
    return sorted({ids[len(ids) * k // buckets] for k in range(1, buckets)}) if ids else []


def range_buckets(bounds: Sequence[str]) -> list[Bucket]:
    """The ranges between consecutive cut points, the first and last open-ended."""
    edges: list[str | None] = [None, *bounds, None]
    n = len(edges) - 1
    return [Bucket(i, n, edges[i], edges[i + 1], ranged=True) for i in range(n)]


def split(buckets: int, bounds: Sequence[str] | None = None) -> list[Bucket | None]:
    """A statement's buckets: none (one statement) for one bucket, ranges between `bounds` when given, else
    `buckets` hash buckets."""
    if buckets <= 1:
        return [None]
    if bounds:
        return list(range_buckets(bounds))
    return [Bucket(i, buckets) for i in range(buckets)]
