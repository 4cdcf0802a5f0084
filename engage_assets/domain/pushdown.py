"""Push-down: a batch program's source stage and filter chain as SQL that the warehouse runs where the data lives.

Written once, in DuckDB's dialect with `:name` bind parameters, and transpiled to the warehouse's dialect
(`domain.sql_dialect`): DuckDB locally, Snowflake and Athena (Trino) in production.  Per partition:

- the **source statement** (`SourcePlan.valid_rows_sql`): the connector's query with the customer's context
  (`marts.customers`), without the GDPR-erased customers (a bound list, never spliced), without invalid rows
  (unknown customer, NULL or NaN required value no filter judges) and without customers outside the program's
  marketplaces.  The warehouse writes its rows itself (`source_candidates`: Parquet by DuckDB locally, a table on
  Snowflake, an UNLOAD on Athena); its rejected rows (`SourcePlan.rejections_sql`) too, and counts them.  A
  warehouse that joins within a memory limit (the embedded DuckDB) runs it in buckets of customers
  (`valid_rows_sqls`, `Bucket`) when the source is larger than one join's hash table holds in memory;
- the **chain statement** (`ChainPlan`): the look-back counts (`marts.offer_history`, relative to the partition's
  as-of date, see `domain.sources`) and the compiled filter chain (`domain.filters.rejection_code_sql`) over those
  rows; the rejected rows with their filter and reason are written by the warehouse, and only the rows that pass
  leave it, plus per-filter removed counts.  The look-backs are joined only for the rows that reach the first
  filter reading them (`ChainPlan._coded`): the costly join reads a fraction of the keys, the outcome is the same.

Every row, filter id, reason and count is the one the Arrow path (`domain.sources` + `domain.pipeline`) gives: the
tests compare the two on a test warehouse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.filters import (
    CompiledFilter,
    chain_outcomes,
    columns_judged,
    compile_chain,
    rejection_code_sql,
)
from engage_assets.domain.join_buckets import NULL_IDS, Bucket
from engage_assets.domain.marketplaces import MARKETPLACE_COLUMN, MARKETPLACE_FILTER
from engage_assets.domain.source_columns import CONTEXT_COLUMNS, HISTORY_COLUMNS
from engage_assets.domain.sources import UNKNOWN_CUSTOMER_REASON
from engage_assets.domain.sql_dialect import labels, literal, marker, to_dialect

SOURCE_VALIDATION = "source-validation"
CHECK, ERASED, CODE = "__check", "__erased", "__code"
# Present in warehouse tables holding several partitions (Snowflake, Athena): never a candidate column.
PARTITION_COLUMN = "engage_partition_key"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _name(column: str) -> str:
    """A column name as an unquoted identifier (quoted ones would be case-sensitive on Snowflake)."""
    if not _NAME.match(column):
        raise ValueError(f"column {column!r} cannot be pushed down: names must be letters, digits and underscores")
    return column


def _nan_free(expr: str, arrow_type: pa.DataType, column: str) -> str:
    """A floating column with NaN as NULL (SQL orders NaN above every number: `NaN >= 200` is true)."""
    if pa.types.is_floating(arrow_type):
        return f"CASE WHEN isnan({expr}) THEN NULL ELSE {expr} END AS {column}"
    return f"{expr} AS {column}"


HISTORY_SQL = """hist AS (
  SELECT h.customer_id,
         datediff('day', max(CASE WHEN h.program_id = :program_id THEN h.offer_date END), CAST(:as_of_date AS DATE))
             AS days_since_program_offer,
         sum(CASE WHEN h.program_id = :program_id
                   AND h.offer_date >= CAST(:as_of_date AS DATE) - INTERVAL 365 DAY THEN 1 ELSE 0 END)
             AS program_offers_365d,
         sum(CASE WHEN h.offer_date >= CAST(:as_of_date AS DATE) - INTERVAL 91 DAY THEN 1 ELSE 0 END) AS all_offers_91d
  FROM marts.offer_history h
  JOIN (SELECT DISTINCT customer_id FROM src) AS keys ON keys.customer_id = h.customer_id
  WHERE h.offer_date < CAST(:as_of_date AS DATE)
    -- only rows a look-back can count: the program's own (any age), everyone's of the last 91 days
    AND (h.program_id = :program_id OR h.offer_date >= CAST(:as_of_date AS DATE) - INTERVAL 91 DAY)
  GROUP BY h.customer_id
)"""
HISTORY_SELECT = [
    "hist.days_since_program_offer AS days_since_program_offer",
    "CAST(coalesce(hist.program_offers_365d, 0) AS INTEGER) AS program_offers_365d",
    "CAST(coalesce(hist.all_offers_91d, 0) AS INTEGER) AS all_offers_91d",
]


@dataclass(frozen=True)
class SourceFigures:
    """The source stage's counts, read back from what it wrote (`SourcePlan.written_counts_sql`)."""

    rows_read: int
    erased: int
    invalid: dict[str, int]  # reason -> rows (source-validation)
    outside_marketplaces: int

    @property
    def valid(self) -> int:
        return self.rows_read - self.erased - sum(self.invalid.values()) - self.outside_marketplaces


@dataclass(frozen=True)
class SourcePlan:
    """The source stage's SQL for one program, built from the types its drift probe found.

    `source_types`: the connector query's columns and Arrow types; `context_types`: `marts.customers`' context
    columns the query does not select.  `erased`: whether a list of erased customers is bound as `:erased`."""

    program: ProgramConfig
    source_types: Mapping[str, pa.DataType]
    context_types: Mapping[str, pa.DataType]
    erased: bool
    dialect: str = "duckdb"

    def _render(self, sql: str) -> str:
        return to_dialect(sql, self.dialect, {"source": self.program.connector.config.query.strip().rstrip(";")})

    @property
    def columns(self) -> list[str]:
        """The candidate columns, in the Arrow path's order: the query's, the context, the look-backs."""
        return [*self.source_types, *self.context_types]

    def _required(self) -> list[tuple[str, str]]:
        """(column, type) of the required columns the filter chain does not read: a NULL there is invalid."""
        judged = columns_judged(self.program.ordered_filters())
        return [(n, k) for n, k in self.program.connector.requiredColumns.items() if n not in judged]

    def check_outcomes(self) -> list[tuple[str, str | None]]:
        """(filter id, reason) of each `__check` code: an unknown customer, a NULL required value, a marketplace
        outside the program's (whose reason names the row's marketplace: None here)."""
        out: list[tuple[str, str | None]] = [(SOURCE_VALIDATION, UNKNOWN_CUSTOMER_REASON)]
        out += [(SOURCE_VALIDATION, f"{name} is null or not a valid {kind}") for name, kind in self._required()]
        return [*out, (MARKETPLACE_FILTER, None)]

    def _check(self, exprs: Mapping[str, str]) -> str:
        """The `__check` code of a row (its index in `check_outcomes`), NULL for a valid row; cheap per row: no
        text is built for the valid ones."""
        whens = ["c.customer_id IS NULL"] + [f"{exprs[_name(n)]} IS NULL" for n, _ in self._required()]
        market = exprs[MARKETPLACE_COLUMN]
        # A CASE, not IN (…): DuckDB plans an IN list as a join, ten times the cost of this per row.
        inside = f"CASE {market} " + " ".join(f"WHEN {literal(m)} THEN true" for m in self.program.marketplaces)
        whens.append(f"NOT ({inside} ELSE false END)")
        return "CASE " + " ".join(f"WHEN {w} THEN {k}" for k, w in enumerate(whens)) + " END"

    def _marketplace_reason(self, market: str) -> str:
        listed = ", ".join(self.program.marketplaces)
        outside = literal(f" is not one of the program's marketplaces ({listed})")
        unknown = literal(f"marketplace unknown (the program's marketplaces: {listed})")
        return f"coalesce('marketplace ' || CAST({market} AS VARCHAR) || {outside}, {unknown})"

    def judged_sql(self, bucket: Bucket | None = None) -> str:
        """Every source row with its candidate columns (the query's, NaN as NULL, and the customer's context),
        `__check` (NULL for a valid row) and `__erased`; with `bucket`, only that bucket's customers."""
        exprs = {c: f"src.{_name(c)}" for c in self.source_types}
        exprs.update({c: f"c.{_name(c)}" for c in self.context_types})
        types = {**self.source_types, **self.context_types}
        cols = [_nan_free(exprs[c], types[c], c) for c in exprs]
        # NaN counts as NULL in the checks too: the checks read the NaN-free values.
        nan_free = {
            c: (f"(CASE WHEN isnan({e}) THEN NULL ELSE {e} END)" if pa.types.is_floating(types[c]) else e)
            for c, e in exprs.items()
        }
        erased = "coalesce(CAST(src.customer_id AS VARCHAR) IN (:erased), false)" if self.erased else "false"
        source, customers = f"WITH src AS (SELECT * FROM {marker('source')})", "marts.customers"
        if bucket is not None:
            source = (
                f"WITH q AS (SELECT * FROM {marker('source')}),\nsrc AS (SELECT * FROM q WHERE {bucket.holds('q')})"
            )
            customers = f"(SELECT * FROM marts.customers AS m WHERE {bucket.holds('m')})"
        return (
            f"{source}\nSELECT {', '.join(cols)},\n"
            f"  {self._check(nan_free)} AS {CHECK},\n  {erased} AS {ERASED}\nFROM src\n"
            f"LEFT JOIN {customers} c ON c.customer_id = src.customer_id"
        )

    def valid_rows_sql(self, bucket: Bucket | None = None) -> str:
        """The source statement: the partition's candidates (valid, inside the marketplaces, not erased); with
        `bucket`, those of one bucket of customers (the buckets' statements together give the same rows)."""
        cols = ", ".join(f"v.{c}" for c in self.columns)
        return self._render(
            f"SELECT {cols} FROM (\n{self.judged_sql(bucket)}\n) AS v WHERE v.{CHECK} IS NULL AND NOT v.{ERASED}"
        )

    def valid_rows_sqls(self, buckets: Sequence[Bucket | None]) -> list[str]:
        """The source statement, one per bucket of customers (`join_buckets.split`; `[None]`: the statement itself)."""
        return [self.valid_rows_sql(b) for b in buckets]

    def rejections_sqls(self, buckets: Sequence[Bucket | None]) -> list[str]:
        """`rejections_sql` in the same buckets, and for ranges the rows without an id (no range holds them): at 10M
        source rows the one statement's customer join ran out of core (1.5 s of the stage)."""
        ranged = any(b is not None and b.ranged for b in buckets)
        return [self.rejections_sql(b) for b in buckets] + ([self.rejections_sql(NULL_IDS)] if ranged else [])

    def id_sample_sql(self, rows: int) -> str | None:
        """A sample of `rows` of the source's customer ids (DuckDB's reservoir sample), for range buckets; None when
        the ids are not text (they are then bucketed by hash)."""
        kind = self.source_types.get("customer_id")
        if kind is None or not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            return None
        return self._render(
            f"SELECT src.customer_id FROM (SELECT * FROM {marker('source')}) AS src "
            f"USING SAMPLE reservoir({int(rows)} ROWS) REPEATABLE (7)"
        )

    def source_rows_sql(self) -> str:
        """The connector query's row count (how many buckets the source statement needs)."""
        return self._render(f"SELECT count(*) AS n FROM (SELECT * FROM {marker('source')}) AS src")

    def rejections_sql(self, bucket: Bucket | None = None) -> str:
        """The source stage's rejected rows (erased customers leave no trace), in the rejection log's columns; with
        `bucket`, those of one bucket of customers."""
        subject = _name(self.program.connector.subjectColumn)
        outcomes = self.check_outcomes()
        filter_id = f"CASE v.{CHECK} " + " ".join(f"WHEN {k} THEN {literal(f)}" for k, (f, _) in enumerate(outcomes))
        reason = f"CASE v.{CHECK} " + " ".join(
            f"WHEN {k} THEN {literal(r) if r is not None else self._marketplace_reason('v.' + MARKETPLACE_COLUMN)}"
            for k, (_, r) in enumerate(outcomes)
        )
        return self._render(
            f"SELECT CAST(v.customer_id AS VARCHAR) AS customer_id, CAST(v.{subject} AS VARCHAR) AS subject_id, "
            f"'source_candidates' AS stage, {filter_id} END AS filter_id, {reason} END AS reason, "
            "CAST(:program_id AS VARCHAR) AS program_id, CAST(:partition_key AS VARCHAR) AS partition_key "
            f"FROM (\n{self.judged_sql(bucket)}\n) AS v WHERE v.{CHECK} IS NOT NULL AND NOT v.{ERASED}"
        )

    def erased_sql(self) -> str:
        """Source rows whose customer is erased (they are in neither the candidates nor the rejections)."""
        return self._render(
            f"SELECT count(*) AS n FROM (SELECT * FROM {marker('source')}) AS src "
            "WHERE CAST(src.customer_id AS VARCHAR) IN (:erased)"
        )

    def written_counts_sql(self, rejections: str, candidates: str) -> str:
        """Rows per (filter, reason) of what the stage wrote: its rejections, then its candidates (filter NULL).
        Counted from the written rows, not by running the source statement a third time; `rejections` and
        `candidates` are `rows_relation`s, in the warehouse's own dialect."""
        return to_dialect(
            f"SELECT r.filter_id, r.reason, count(*) AS n FROM (SELECT * FROM {marker('rejections')}) AS r "
            "GROUP BY r.filter_id, r.reason\nUNION ALL\n"
            f"SELECT NULL, NULL, count(*) FROM (SELECT * FROM {marker('candidates')}) AS v",
            self.dialect,
            {"rejections": f"SELECT * FROM {rejections}", "candidates": f"SELECT * FROM {candidates}"},
        )

    @staticmethod
    def figures(counts: pa.Table, erased: int) -> SourceFigures:
        """`written_counts_sql`'s result (and the erased rows' count) as the stage's figures."""
        rows_read, outside = erased, 0
        invalid: dict[str, int] = {}
        for row in counts.to_pylist():
            n = int(row["n"])
            rows_read += n
            if row["filter_id"] == MARKETPLACE_FILTER:
                outside += n
            elif row["filter_id"] is not None:
                invalid[row["reason"]] = invalid.get(row["reason"], 0) + n
        return SourceFigures(rows_read, erased, dict(sorted(invalid.items())), outside)


def context_probe_sql(source_columns: Sequence[str]) -> str:
    """`marts.customers`' context columns the query does not select, with no rows: their types."""
    context = [c for c in CONTEXT_COLUMNS if c not in source_columns]
    return f"SELECT {', '.join(context) or 'customer_id'} FROM marts.customers LIMIT 0"


@dataclass(frozen=True)
class ChainPlan:
    """The filter chain over a relation holding the source stage's rows (`relation`: a table or a subquery)."""

    program: ProgramConfig
    relation: str  # in the warehouse's own dialect: never transpiled
    columns: Sequence[str]
    dialect: str = "duckdb"
    lookbacks: str | None = None  # where `lookbacks_sql`'s rows were written (else computed in each statement)

    def _render(self, sql: str) -> str:
        verbatim = {"relation": f"SELECT * FROM {self.relation}"}
        if self.lookbacks:
            verbatim["lookbacks"] = f"SELECT * FROM {self.lookbacks}"
        return to_dialect(sql, self.dialect, verbatim)

    def _early(self) -> str:
        """The rows with `__early`: their code among the filters before the first that reads a look-back."""
        chain = self._chain()
        first = next((i for i, f in enumerate(chain) if set(f.columns) & set(HISTORY_COLUMNS)), len(chain))
        early = rejection_code_sql(chain[:first]) if first else "CAST(NULL AS INTEGER)"
        return f"e AS (SELECT r.*, {early} AS __early FROM (SELECT * FROM {marker('relation')}) AS r)"

    def lookbacks_sql(self) -> str:
        """The look-backs of the rows that reach the first filter reading them (customer_id and the counts): the
        costly join, run once; the chain's statements read its result (`lookbacks`)."""
        return self._render(
            f"WITH {self._early()},\nsrc AS (SELECT e.customer_id FROM e WHERE e.__early IS NULL),\n{HISTORY_SQL}\n"
            "SELECT * FROM hist"
        )

    def _chain(self) -> list[CompiledFilter]:
        return compile_chain(self.program.ordered_filters(), set(self.columns) | set(HISTORY_COLUMNS))

    @property
    def output_columns(self) -> list[str]:
        """The eligible rows' columns: the source's, then the look-backs (the Arrow path's order)."""
        return [*self.columns, *(c for c in HISTORY_COLUMNS if c not in self.columns)]

    def _coded(self) -> str:
        """Every source row with the look-backs and `__code`, its first failing check (NULL: it passes).

        The look-backs (`marts.offer_history`, the costly join) are computed only for the rows that pass every filter
        before the first one that reads them: a row rejected earlier is rejected whatever its history says, so its
        code is the same, and the join reads a quarter of the keys or fewer instead of all of them."""
        chain = self._chain()
        history = ", ".join(HISTORY_SELECT)
        if self.lookbacks is None:
            hist = f"src AS (SELECT e.customer_id FROM e WHERE e.__early IS NULL),\n{HISTORY_SQL}"
        else:
            hist = f"hist AS (SELECT * FROM {marker('lookbacks')})"
        return (
            f"WITH {self._early()},\n{hist},\n"
            f"j0 AS (SELECT e.*, {history} FROM e LEFT JOIN hist ON hist.customer_id = e.customer_id)\n"
            f"SELECT j0.*, CASE WHEN j0.__early IS NOT NULL THEN j0.__early ELSE {rejection_code_sql(chain)} END "
            f"AS {CODE} FROM j0"
        )

    def eligible_sql(self) -> str:
        """The rows that pass every filter, in the source's columns: all that leaves the warehouse."""
        cols = ", ".join(f"j.{_name(c)}" for c in self.output_columns)
        # `__early IS NULL` is implied by `__code IS NULL`, but said, DuckDB filters before the look-back join: only
        # the rows that reach the first look-back filter probe it.
        return self._render(
            f"SELECT {cols} FROM (\n{self._coded()}\n) AS j WHERE j.__early IS NULL AND j.{CODE} IS NULL"
        )

    def rejections_sql(self) -> str:
        """Each rejected row with its filter and its check's own reason (the Arrow path's codes and texts)."""
        chain = self._chain()
        outcomes = chain_outcomes(chain)
        ids = [chain[int(i)].filter_id for i in outcomes.filter_index]

        def case(values: list[str]) -> str:
            return f"CASE j.{CODE} " + " ".join(f"WHEN {k} THEN {literal(v)}" for k, v in enumerate(values)) + " END"

        subject = _name(self.program.subject_column)
        if not outcomes.reasons:
            return (
                "SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS VARCHAR) AS subject_id, "
                "CAST(NULL AS VARCHAR) AS stage, CAST(NULL AS VARCHAR) AS filter_id, CAST(NULL AS VARCHAR) AS reason, "
                "CAST(NULL AS VARCHAR) AS program_id, CAST(NULL AS VARCHAR) AS partition_key WHERE false"
            )
        return self._render(
            f"SELECT CAST(j.customer_id AS VARCHAR) AS customer_id, CAST(j.{subject} AS VARCHAR) AS subject_id, "
            f"'eligible_candidates' AS stage, {labels(case(ids), ids, self.dialect)} AS filter_id, "
            f"{labels(case(outcomes.reasons), outcomes.reasons, self.dialect)} AS reason, "
            "CAST(:program_id AS VARCHAR) AS program_id, CAST(:partition_key AS VARCHAR) AS partition_key "
            f"FROM (\n{self._coded()}\n) AS j WHERE j.{CODE} IS NOT NULL"
        )

    def removed_sql(self, rejections: str) -> str:
        """Rows per filter of what `rejections_sql` wrote (`rejections`: its `rows_relation`): counted from the
        written rows, not by running the chain again."""
        return to_dialect(
            f"SELECT r.filter_id, count(*) AS n FROM (SELECT * FROM {marker('rejections')}) AS r GROUP BY r.filter_id",
            self.dialect,
            {"rejections": f"SELECT * FROM {rejections}"},
        )

    def removed(self, counts: pa.Table) -> dict[str, int]:
        """{filter_id: rows it removed}, every filter of the chain in order (zero included)."""
        removed = {f.filter_id: 0 for f in self._chain()}
        for row in counts.to_pylist():
            removed[row["filter_id"]] += int(row["n"])
        return removed
