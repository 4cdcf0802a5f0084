"""The embedded warehouse: one DuckDB file that dbt-duckdb builds and connectors read (the local default)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
from pydantic import Field, PrivateAttr
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from resources.warehouse.base import (
    LIST_TYPES,
    Query,
    StageTarget,
    WarehouseResource,
    bind_lists,
    bind_style,
    split_query,
    until_deadline,
    used_params,
)

SHORT_LIST = 64  # lists up to this long are bound one parameter per value


def _duckdb_bound(sql: str, params: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The SQL in DuckDB's `$name` style and the values it names.  `IN (:list)`: short lists as one parameter per
    value (`IN ($ids__0, …)`, a constant IN list DuckDB pushes into the scan, using the zone maps: 1.5-3x faster on
    the event path's point reads than a semi-join), longer ones as one list parameter (`IN (SELECT unnest($ids))`)."""
    lists = [v for v in (params or {}).values() if isinstance(v, LIST_TYPES)]
    sql, values = bind_lists(sql, params, "expand" if all(len(v) <= SHORT_LIST for v in lists) else "unnest")
    query, names = bind_style(sql, "dollar")
    return query, used_params(names, values)


def _path_literal(path: Path) -> str:
    """A file path as a DuckDB string literal (COPY's target cannot be a bound parameter)."""
    return "'" + str(path).replace("'", "''") + "'"


# The memory a source row takes in the customer join's hash table, with room for the statement's other buffers:
# calibrated on the churn bench (12 source columns, 15 context columns; 400MB holds 1.25M rows, spills 2.5M).
BUCKET_ROW_BYTES = 320
_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def byte_count(size: str) -> int:
    """`400MB`, `2 GiB`, … in bytes (DuckDB's memory-limit units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*", size, flags=re.IGNORECASE)
    if m is None:
        raise ValueError(f"not a size: {size!r} (e.g. 400MB, 2GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


# A stage write's temporaries (`.<name>.<hex>.tmp`, `.parts`, `.old`) older than this were left by a killed run: the
# next write of the same stage removes them (a younger one may be a concurrent write's).
LEFTOVER_AGE_S = 3600


def _sweep_leftovers(path: Path, now: float | None = None) -> int:
    """Remove what killed writes of `path` left beside it; how many."""
    now = time.time() if now is None else now
    swept = 0
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if leftover.suffix in (".tmp", ".parts", ".old") and now - leftover.stat().st_mtime > LEFTOVER_AGE_S:
            _remove(leftover)
            swept += 1
    return swept


def _swap_in(new: Path, path: Path) -> None:
    """Put `new` (a file or a folder) where `path` is: one rename over a file; a folder, or a file where a folder
    was, moves the old one aside first."""
    if not new.is_dir() and not path.is_dir():
        os.replace(new, path)
        return
    old = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    _remove(old)


# COPY options of the stage files (lz4: quick to write and to read back) and of the rejections: their ids are unique
# per row, so DuckDB's attempt at a dictionary for them is wasted work; their labels are ENUMs (`sql_dialect.labels`),
# written as dictionaries anyway (the 10M chain's 9.5M rejected rows: -0.25 s, the same file size).
STAGE_COPY = "(FORMAT parquet, COMPRESSION lz4_raw)"
REJECTIONS_COPY = "(FORMAT parquet, COMPRESSION lz4_raw, DICTIONARY_SIZE_LIMIT 1)"


class WarehouseLockedError(RuntimeError):
    """Another process kept the DuckDB file's lock for longer than the configured wait."""


_LOCK_CONFLICT = "Could not set lock on file"


def _is_lock_conflict(exc: BaseException) -> bool:
    # Only a lock conflict is worth waiting for: a missing file or a bad setting fails at once.
    return isinstance(exc, duckdb.IOException) and _LOCK_CONFLICT in str(exc)


def connect_duckdb(
    path: str,
    *,
    read_only: bool = True,
    threads: int | None = None,
    lock_timeout_s: float = 60.0,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, retrying with jittered backoff while another process holds a conflicting lock.

    DuckDB lets one process open a file read-write (or many read-only); every Dagster run, and dbt, is its
    own process, so a run that opens the file while another writes must wait rather than fail. Only a lock
    conflict is retried: a missing file or a bad setting fails at once.
    """
    config: dict[str, Any] = {}
    if threads is not None:
        config["threads"] = threads
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    retrying = Retrying(
        retry=retry_if_exception(_is_lock_conflict),
        stop=stop_after_delay(lock_timeout_s),
        # Jitter spreads out several waiting runs so they do not retry in lock-step (~50 ms doubling to 2 s).
        wait=until_deadline(wait_random_exponential(multiplier=0.1, max=2.0), lock_timeout_s),
    )
    try:
        return retrying(duckdb.connect, path, read_only=read_only, config=config)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        mode = "read-only" if read_only else "read-write"
        raise WarehouseLockedError(
            f"DuckDB file {path} could not be opened {mode}: another process held a conflicting "
            f"lock for {lock_timeout_s:.0f} s. DuckDB allows one writing process per file; give "
            f"warehouse-writing assets (dbt included) one Dagster pool of size 1 and open read-only "
            f"where only reading. DuckDB said: {last}"
        ) from last


def _duckdb_relation_to_arrow(rel: duckdb.DuckDBPyRelation) -> pa.Table:
    # duckdb 2.0 names it to_arrow_table; 1.x (allowed by pyproject) has fetch_arrow_table.
    to_arrow = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return to_arrow()


class DuckDBWarehouse(WarehouseResource):
    """The embedded warehouse: one DuckDB file that dbt-duckdb builds and connectors read.

    Not built on dagster-duckdb's `DuckDBResource`, whose `get_connection` always opens read-write and
    retries *any* `IOException` (a missing file included) ten times with exponential sleeps (~100 s). Here
    reads open read-only, so many runs can read at once, and only a lock conflict is retried, within
    `lock_timeout_s`. `get_connection()` keeps DuckDBResource's shape for code that wants a raw connection.
    """

    path: str = Field(description="Path of the DuckDB database file.")
    read_only: bool = Field(
        default=True,
        description="Open read-only (the default): several processes may then read the file at once.",
    )
    threads: int | None = Field(default=None, description="DuckDB worker threads; None keeps DuckDB's default.")
    lock_timeout_s: float = Field(
        default=60.0, description="How long to wait for another process's lock on the file before failing."
    )
    memory_limit: str | None = Field(
        default="400MB",
        description="DuckDB's memory limit for a query (None: DuckDB's default, 80% of RAM). The push-down's "
        "statements (the source query, its joins, the filter chain, COPY to Parquet) stream within it and spill "
        "the rest to `<path>.tmp`, so a run's memory does not grow with the partition's source rows; the eligible "
        "rows returned to the run come on top of it. 400MB keeps a 10M-row partition's run under 1 GB.",
    )

    joins_in_buckets: ClassVar[bool] = True  # its joins run within `memory_limit` (`source_buckets`)

    _held: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)
    _snapshots: dict[str, pa.Table | None] = PrivateAttr(default_factory=dict)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold one connection open for every query inside (opening the file costs 10-20 ms, more than the event
        path's whole query time).  It holds the file's lock for as long: another process's write (dbt) waits until
        the session ends, so keep sessions as short as the work that needs them."""
        if self._held is not None:  # nested: the outer session's connection serves
            yield
            return
        with self._connect() as conn:
            self._held = conn
            try:
                yield
            finally:
                self._held = None
                self._snapshots.clear()

    def session_snapshot(self, sql: str, max_rows: int) -> pa.Table | None:
        """Inside a read-only session the file cannot change: DuckDB lets no other process write it while this one
        holds it open, and this connection writes nothing.  So the whole result of `sql` is read once per session
        and kept (while it has at most `max_rows` rows), and the event path's point reads become Arrow filters: a
        DuckDB statement costs 1-2 ms of planning and CPU whatever it reads (the session ends: the snapshots go)."""
        if self._held is None or not self.read_only:
            return None
        if sql not in self._snapshots:
            rows = self.query_arrow(f"SELECT count(*) AS n FROM ({sql})").column("n")[0].as_py()
            self._snapshots[sql] = self.query_arrow(sql) if rows <= max_rows else None
        return self._snapshots[sql]

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file, closed on exit (same shape as dagster-duckdb's DuckDBResource); inside a
        `session`, the session's connection (a cursor of it, closed on exit)."""
        if self._held is not None:
            cur = self._held.cursor()
            try:
                yield cur
            finally:
                cur.close()
            return
        with self._connect() as conn:
            yield conn

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = connect_duckdb(
            self.path,
            read_only=self.read_only,
            threads=self.threads,
            lock_timeout_s=self.lock_timeout_s,
            memory_limit=self.memory_limit,
        )
        try:
            yield conn
        finally:
            conn.close()

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run the query with DuckDB's `$name` parameters (a list one parameter); the file is opened only for it."""
        return self.query_arrow_many([(sql, params or {})])[0]

    def query_batches(self, sql: str, params: Mapping[str, Any] | None, rows: int) -> Iterator[pa.RecordBatch]:
        """The rows streamed from DuckDB's result a batch at a time: the connection is opened when the first batch
        is asked for (a session's, if one is open then) and held until the last.  In the statement's own order
        (insertion order kept): the source stage's rows are in customer order, which later stages' writes favour."""
        query, values = _duckdb_bound(sql, params)
        with self.get_connection() as conn:
            yield from conn.sql(query, params=values or None).to_arrow_reader(rows)

    def query_arrow_many(self, queries: Sequence[Query]) -> list[pa.Table]:
        """Run the queries on one connection (the file is opened once for all of them)."""
        with self.get_connection() as conn:
            out = []
            for q in queries:
                query, values = _duckdb_bound(*split_query(q))
                rel = conn.sql(query, params=values or None)
                if rel is None:
                    raise ValueError("query_arrow expects a query that returns rows")
                out.append(_duckdb_relation_to_arrow(rel))
            return out

    def write_rows(self, sql: str, params: Mapping[str, Any] | None, target: StageTarget) -> str:
        """DuckDB writes the query's rows itself (`COPY ... TO` Parquet, lz4) to `<root>/<target's path>`, through
        a temporary file renamed over the previous run's: a re-run replaces, a reader never sees half a file.  The
        rows stream from the query to the file within DuckDB's memory limit (insertion order not kept)."""
        return self.write_rows_of([sql], params, target)

    def source_buckets(self, rows: int) -> int:
        """Buckets of at most `memory_limit / BUCKET_ROW_BYTES` source rows: each bucket's join builds its hash
        table in memory.  One statement over more rows than that runs the customer join out of core, and writing
        its wide output from the spilled partitions costs far more than one statement per bucket (10M rows under
        400MB: 31 s in one statement; 8 hash buckets 8.4 s; 8 ranges of customer_id on tables stored in customer
        order 4.8 s).  How the buckets are cut is the source stage's choice (`engage_assets.domain.join_buckets`)."""
        if self.memory_limit is None:
            return 1
        per_bucket = max(1, byte_count(self.memory_limit) // BUCKET_ROW_BYTES)
        return max(1, -(-rows // per_bucket))

    def write_rows_of(
        self, sqls: Sequence[str], params: Mapping[str, Any] | None, target: StageTarget, one_file: bool = False
    ) -> str:
        """One statement: one Parquet file (`write_rows`).  Several (the buckets of one statement): a folder of the
        same name holding a file per bucket, written whole beside the previous run's, then swapped in by two
        renames (a reader reading in between finds no stage: the partition is being replaced); with `one_file`,
        the buckets' files are then copied into one file (the source stage's rejections: few rows, and dbt reads
        one file per partition)."""
        if "://" in target.root:
            raise ValueError(f"the embedded warehouse writes stage files to a local folder, not {target.root}")
        path = Path(target.root) / target.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep_leftovers(path)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        folder = tmp.with_suffix(".parts") if one_file else tmp
        files = [tmp] if len(sqls) == 1 else [folder / f"bucket-{i:04d}.parquet" for i in range(len(sqls))]
        options = REJECTIONS_COPY if target.stage is not None else STAGE_COPY
        try:
            if len(sqls) > 1:
                folder.mkdir()
            with self.get_connection() as conn:
                conn.execute("SET preserve_insertion_order = false")
                for sql, file in zip(sqls, files, strict=True):
                    query, values = _duckdb_bound(sql, params)
                    conn.execute(f"COPY ({query}) TO {_path_literal(file)} {options}", values)
                if one_file and len(sqls) > 1:
                    parts = f"read_parquet({_path_literal(folder / '*.parquet')})"
                    conn.execute(f"COPY (SELECT * FROM {parts}) TO {_path_literal(tmp)} {options}")
            _swap_in(tmp, path)
        finally:
            _remove(tmp)
            _remove(folder)
        return str(path)

    def rows_relation(self, target: StageTarget) -> str:
        """`read_parquet(...)` of what `write_rows` (a file) or `write_rows_of` (a folder of files) wrote."""
        path = Path(target.root) / target.relative_path
        return f"read_parquet({_path_literal(path / '*.parquet' if path.is_dir() else path)})"

    def columns(self, relation: str) -> dict[str, str]:
        """Column name -> DuckDB type of a table or view (e.g. `main.orders`), in column order.

        For schema checks before a run reads a relation. The name is resolved as a catalog name by DuckDB,
        never spliced into SQL.
        """
        with self.get_connection() as conn:
            rel = conn.table(relation)
            return {name: str(dtype) for name, dtype in zip(rel.columns, rel.types, strict=False)}
