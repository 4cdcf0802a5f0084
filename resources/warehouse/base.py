"""The warehouse interface: run a program's connector query for one partition and return Arrow.

Queries take the partition's dates as named bind parameters written `:name` in the YAML (`:partition_start`,
`:partition_end`, `:as_of_date`); each backend binds them in its own style (`bind_style`), never by string
formatting, and binds only the parameters the SQL names (`used_params`).

Pass dates as `datetime.date` (and instants as `datetime.datetime`): DuckDB and Snowflake would also coerce an
ISO string, but Athena (Trino) types a parameter by its literal and will not compare a DATE with a VARCHAR.

Customer ids and other value lists are bound too: a list value of a parameter the SQL reads as `IN (:ids)` becomes
one list parameter (DuckDB) or one parameter per value (`bind_lists`), never quoted into the text.  A `:name` inside
a string literal, a quoted identifier or a comment is text, not a parameter.

`until_deadline` caps a tenacity wait so that the last try happens at a deadline rather than past it (the DuckDB
lock wait and the Athena status poll both give up at a configured time).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import dagster as dg
import pyarrow as pa
from tenacity import RetryCallState

# A string literal ('…' with '' or a backslash escaping a quote, as Snowflake reads it), a quoted identifier or a
# comment: matched first so that a `:name` inside one is left as written, never taken for a parameter.
_SKIP = r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*"
_PARAM = re.compile(rf"{_SKIP}|(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
_IN_LIST = re.compile(rf"{_SKIP}|\bIN\s*\(\s*:([A-Za-z_][A-Za-z0-9_]*)\s*\)", re.IGNORECASE)
LIST_TYPES = (list, tuple, set, frozenset)


def bind_style(sql: str, style: str) -> tuple[str, list[str]]:
    """Rewrite `:name` parameters to a backend's style; returns the SQL and the parameter names in order.

    style: "dollar" ($name, DuckDB), "pyformat" (%(name)s, Snowflake), "qmark" (?, Athena).
    """
    names: list[str] = []

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is None:  # a literal, quoted identifier or comment
            return m.group(0)
        names.append(m.group(1))
        if style == "dollar":
            return f"${m.group(1)}"
        if style == "pyformat":
            return f"%({m.group(1)})s"
        if style == "qmark":
            return "?"
        raise ValueError(f"unknown parameter style {style!r}")

    return _PARAM.sub(repl, sql), names


def bind_lists(sql: str, params: Mapping[str, Any] | None, style: str) -> tuple[str, dict[str, Any]]:
    """`IN (:name)` whose value is a list (tuple, set): every value bound as a parameter, never spliced into the SQL.

    style "unnest": `IN (SELECT unnest(:name))`, the list one parameter (DuckDB binds a list); "expand":
    `IN (:name__0, …, :name__k)`, one scalar parameter per value (Snowflake, Athena).  Duplicates are bound once;
    an empty list matches nothing (`IN (NULL)`).  Returns the SQL, still with `:name` parameters, and the values.
    """
    values = dict(params or {})

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None or not isinstance(values.get(name), LIST_TYPES):
            return m.group(0)
        items = list(dict.fromkeys(values[name]))
        if not items:
            return "IN (NULL)"
        if style == "unnest":
            values[name] = items
            return f"IN (SELECT unnest(:{name}))"
        if style != "expand":
            raise ValueError(f"unknown list style {style!r}")
        values.update({f"{name}__{i}": item for i, item in enumerate(items)})
        return "IN (" + ", ".join(f":{name}__{i}" for i in range(len(items))) + ")"

    return _IN_LIST.sub(repl, sql), values


@dataclass(frozen=True)
class StageTarget:
    """Where the warehouse writes a stage's rows for one partition (push-down, `domain.pushdown`): the program's
    `source_candidates`, or its `rejections` of one `stage`.  `root` is the stage root (a local folder for the
    embedded warehouse's Parquet; ignored by warehouses that write tables)."""

    root: str
    group: str
    name: str  # "source_candidates" | "rejections"
    partition_key: str
    stage: str | None = None  # for rejections: the stage that rejected them

    @property
    def relative_path(self) -> str:
        """`<group>/source_candidates/<pk>.parquet` or `<group>/rejections/<stage>/<pk>.parquet` (the stage root's
        layout: the IO manager's and the rejection log's)."""
        middle = self.name if self.stage is None else f"{self.name}/{self.stage}"
        return f"{self.group}/{middle}/{self.partition_key}.parquet"


class WarehouseResource(dg.ConfigurableResource, ABC):
    """A warehouse a program's connector query runs on."""

    # The SQL dialect it reads (`engage_assets.domain.sql_dialect`): push-down SQL is transpiled to it.
    dialect: ClassVar[str] = "duckdb"

    @abstractmethod
    def write_rows(self, sql: str, params: Mapping[str, Any] | None, target: StageTarget) -> str:
        """Have the warehouse write the query's rows to `target`, replacing what a previous run wrote there (the
        rows never pass through this process); returns where they are (a path or a table)."""

    # Whether a large source statement is run in buckets of customers (`source_buckets`): only a warehouse whose joins
    # run within a memory limit (the embedded DuckDB); the others are asked for no row count.
    joins_in_buckets: ClassVar[bool] = False

    def source_buckets(self, rows: int) -> int:
        """In how many buckets of customers a source statement of `rows` source rows is run (`write_rows_of`):
        one, unless the warehouse `joins_in_buckets`."""
        return 1

    def write_rows_of(
        self, sqls: Sequence[str], params: Mapping[str, Any] | None, target: StageTarget, one_file: bool = False
    ) -> str:
        """`write_rows` for a statement run in buckets (`sqls`: one statement per bucket, their rows together the
        statement's; `one_file`: stored as one file or table, as `write_rows` stores it): a warehouse whose
        `source_buckets` is always one writes the one statement."""
        if len(sqls) != 1:
            raise ValueError(f"{type(self).__name__} writes a stage from one statement, not {len(sqls)}")
        return self.write_rows(sqls[0], params, target)

    @abstractmethod
    def rows_relation(self, target: StageTarget) -> str:
        """SQL naming the rows `write_rows` wrote to `target` (a table function or a subquery, in this warehouse's
        dialect, possibly reading `:partition_key`), for the next stage's statement."""

    @abstractmethod
    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a read-only query with `:name` bind parameters and return the result as Arrow.

        A list value is bound where the SQL reads `IN (:name)` (`bind_lists`): ids never reach the SQL text."""

    def query_batches(self, sql: str, params: Mapping[str, Any] | None, rows: int) -> Iterator[pa.RecordBatch]:
        """The query's rows as record batches of at most `rows` rows, read as they are consumed where the backend
        streams (the embedded DuckDB); the default reads the whole result, then hands it out in batches."""
        yield from self.query_arrow(sql, params).to_batches(rows)

    def query_arrow_many(self, queries: Sequence[Query]) -> list[pa.Table]:
        """Run several read-only queries (SQL, or SQL and its parameters), one result each, in order.  A backend may
        share one connection among them (the event path's enrichment reads: one file open instead of one per query)."""
        return [self.query_arrow(*split_query(q)) for q in queries]

    @contextmanager
    def session(self) -> Iterator[None]:
        """Within it, queries may share one connection (a consumer deciding events one after another: no connection
        opened per event).  A backend without connection setup cost keeps the default, which does nothing."""
        yield

    def session_snapshot(self, sql: str, max_rows: int) -> pa.Table | None:
        """Inside a session during which the data cannot change, the whole result of `sql` (no parameters), read
        once per session and kept while it has at most `max_rows` rows; None otherwise (the default: the backend
        keeps no snapshot, the caller queries as usual)."""
        return None


# The resource key of the warehouse a program's connector `type` runs on.  Production binds `warehouse` to Snowflake
# and `athena_warehouse` to Athena (`resources.by_env`); locally both are the embedded DuckDB file.
ATHENA_WAREHOUSE_KEY = "athena_warehouse"
WAREHOUSE_KEY = "warehouse"


def warehouse_key(connector_type: str) -> str:
    """The resource key of the engine a connector of this `type` queries: Athena for `athena`, else the warehouse."""
    return ATHENA_WAREHOUSE_KEY if connector_type == "athena" else WAREHOUSE_KEY


# A query of `query_arrow_many`: its SQL, or its SQL and bind parameters.
Query = str | tuple[str, Mapping[str, Any]]


def split_query(query: Query) -> tuple[str, Mapping[str, Any] | None]:
    """(sql, params) of a `Query`."""
    return (query, None) if isinstance(query, str) else query


def used_params(names: list[str], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The subset of `params` the query uses; a clear error for any it uses but was not given.

    Callers pass every partition parameter whether or not a program's query uses it; DuckDB rejects
    unused named parameters, so each backend binds only what the SQL names.
    """
    params = params or {}
    missing = sorted({n for n in names if n not in params})
    if missing:
        raise KeyError(f"query uses bind parameters with no value: {', '.join(missing)}")
    return {n: params[n] for n in dict.fromkeys(names)}


def until_deadline(wait: Callable[[RetryCallState], float], timeout_s: float) -> Callable[[RetryCallState], float]:
    """A tenacity wait that never sleeps past `timeout_s` after the first try, so the last try falls on the
    deadline (pair it with `stop_after_delay(timeout_s)`)."""

    def capped(state: RetryCallState) -> float:
        remaining = timeout_s - (state.seconds_since_start or 0.0)
        return max(0.0, min(wait(state), remaining))

    return capped
