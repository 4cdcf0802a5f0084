"""Warehouse connectors: run a program's connector query for one partition and return Arrow.

Queries take the partition's dates as named bind parameters written `:name` in the YAML (`:partition_start`,
`:partition_end`, `:as_of_date`); each backend binds them in its own style, never by string formatting.

Three implementations share the `WarehouseResource` interface:

- `DuckDBWarehouse`: the embedded default (one DuckDB file, read-only by default, lock-conflict retry);
- `SnowflakeWarehouse`: production, on top of dagster-snowflake's `SnowflakeResource`;
- `AthenaWarehouse`: production for sources that live in S3 (`order_tracking`), boto3's Athena client.

Pass dates as `datetime.date` (and instants as `datetime.datetime`): DuckDB and Snowflake would also coerce an
ISO string, but Athena (Trino) types a parameter by its literal and will not compare a DATE with a VARCHAR.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
from pydantic import Field

from resources.aws import AwsClientConfig

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


def bind_style(sql: str, style: str) -> tuple[str, list[str]]:
    """Rewrite `:name` parameters to a backend's style; returns the SQL and the parameter names in order.

    style: "dollar" ($name, DuckDB), "pyformat" (%(name)s, Snowflake), "qmark" (?, Athena).
    """
    names: list[str] = []

    def repl(m: re.Match[str]) -> str:
        names.append(m.group(1))
        if style == "dollar":
            return f"${m.group(1)}"
        if style == "pyformat":
            return f"%({m.group(1)})s"
        if style == "qmark":
            return "?"
        raise ValueError(f"unknown parameter style {style!r}")

    return _PARAM.sub(repl, sql), names


class WarehouseResource(dg.ConfigurableResource, ABC):
    @abstractmethod
    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a read-only query with `:name` bind parameters and return the result as Arrow."""


def _used_params(names: list[str], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The subset of `params` the query uses; a clear error for any it uses but was not given.

    Callers pass every partition parameter whether or not a program's query uses it; DuckDB rejects
    unused named parameters, so each backend binds only what the SQL names.
    """
    params = params or {}
    missing = sorted({n for n in names if n not in params})
    if missing:
        raise KeyError(f"query uses bind parameters with no value: {', '.join(missing)}")
    return {n: params[n] for n in dict.fromkeys(names)}


# --------------------------------------------------------------------------------------------- DuckDB


class WarehouseLockedError(RuntimeError):
    """Another process kept the DuckDB file's lock for longer than the configured wait."""


_LOCK_CONFLICT = "Could not set lock on file"


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
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(path, read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if _LOCK_CONFLICT not in str(exc):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                mode = "read-only" if read_only else "read-write"
                raise WarehouseLockedError(
                    f"DuckDB file {path} could not be opened {mode}: another process held a conflicting "
                    f"lock for {lock_timeout_s:.0f} s. DuckDB allows one writing process per file; give "
                    f"warehouse-writing assets (dbt included) one Dagster pool of size 1 and open read-only "
                    f"where only reading. DuckDB said: {exc}"
                ) from exc
            # Jitter spreads out several waiting runs so they do not retry in lock-step.
            time.sleep(min(remaining, delay * random.uniform(0.5, 1.5)))
            delay = min(delay * 2, 2.0)


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
        default="1GB",
        description="DuckDB's memory limit for a query (None: DuckDB's default, 80% of RAM). The Arrow result "
        "comes on top of it; a larger join or aggregation spills to `<path>.tmp`. 1GB keeps a 10M-row partition's "
        "source query under the 4 GB a batch run may use, at a few seconds' cost.",
    )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file, closed on exit (same shape as dagster-duckdb's DuckDBResource)."""
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
        """Run the query with DuckDB's `$name` parameters; the file is opened only for this query."""
        query, names = bind_style(sql, "dollar")
        values = _used_params(names, params)
        with self.get_connection() as conn:
            rel = conn.sql(query, params=values or None)
            if rel is None:
                raise ValueError("query_arrow expects a query that returns rows")
            return _duckdb_relation_to_arrow(rel)

    def columns(self, relation: str) -> dict[str, str]:
        """Column name -> DuckDB type of a table or view (e.g. `main.orders`), in column order.

        For schema checks before a run reads a relation. The name is resolved as a catalog name by DuckDB,
        never spliced into SQL.
        """
        with self.get_connection() as conn:
            rel = conn.table(relation)
            return {name: str(dtype) for name, dtype in zip(rel.columns, rel.types, strict=False)}


# ------------------------------------------------------------------------------------------ Snowflake


class SnowflakeWarehouse(WarehouseResource):
    """Snowflake through dagster-snowflake's `SnowflakeResource` (its connection handling, auth and config).

    The fields are the SnowflakeResource fields a connector needs; secrets come from `dg.EnvVar`:

        SnowflakeWarehouse(account=dg.EnvVar("SNOWFLAKE_ACCOUNT"), user=dg.EnvVar("SNOWFLAKE_USER"),
                           password=dg.EnvVar("SNOWFLAKE_PASSWORD"), database="ENGAGE", schema="MARTS",
                           warehouse="ENGAGE_WH", role="ENGAGE_READER")

    The SnowflakeResource is built per query rather than held as a nested resource field because importing
    dagster_snowflake (Snowpark, snowflake.core) takes seconds, and every local run process imports this
    module without ever touching Snowflake. Parameters are bound in the connector's default `pyformat` style.
    """

    account: str = Field(description="Snowflake account identifier.")
    user: str = Field(description="User login name.")
    password: str | None = Field(default=None, description="Password (use dg.EnvVar).")
    private_key: str | None = Field(default=None, description="PEM private key for key-pair auth (use dg.EnvVar).")
    private_key_password: str | None = Field(default=None, description="Passphrase of the private key.")
    database: str | None = Field(default=None, description="Default database.")
    schema_: str | None = Field(default=None, alias="schema", description="Default schema.")
    warehouse: str | None = Field(default=None, description="Virtual warehouse to run queries on.")
    role: str | None = Field(default=None, description="Role to assume.")
    connection_args: dict[str, Any] | None = Field(
        default=None,
        description="Further snowflake.connector.connect arguments (SnowflakeResource's "
        "additional_snowflake_connection_args), e.g. session_parameters.",
    )

    def snowflake_resource(self) -> Any:
        """The dagster-snowflake resource for this config (imported on first use)."""
        from dagster_snowflake import SnowflakeResource

        config = {
            "account": self.account,
            "user": self.user,
            "password": self.password,
            "private_key": self.private_key,
            "private_key_password": self.private_key_password,
            "database": self.database,
            "schema": self.schema_,
            "warehouse": self.warehouse,
            "role": self.role,
            "additional_snowflake_connection_args": self.connection_args,
        }
        return SnowflakeResource(**{k: v for k, v in config.items() if v is not None})

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run the query and fetch the result as Arrow; column names lower-cased (Snowflake upper-cases them).

        Lower-casing makes a program's column names the same on DuckDB and Snowflake.
        """
        _, names = bind_style(sql, "pyformat")
        values = _used_params(names, params)
        if values:
            # With parameters the connector formats the query with `%`: a literal % (LIKE 'a%') must be doubled.
            query, _ = bind_style(sql.replace("%", "%%"), "pyformat")
        else:
            query = sql
        with self.snowflake_resource().get_connection() as conn:
            cursor = conn.cursor()
            try:
                cursor.execute(query, values or None)
                table = cursor.fetch_arrow_all(force_return_table=True)
            finally:
                cursor.close()
        return table.rename_columns([name.lower() for name in table.column_names])


# --------------------------------------------------------------------------------------------- Athena


class AthenaQueryError(RuntimeError):
    """An Athena query ended FAILED or CANCELLED."""


def athena_literal(value: Any) -> str:
    """A Python value as the SQL literal Athena's ExecutionParameters expect.

    Athena substitutes each execution parameter as a literal expression, typed by how it is written: a
    string needs quotes, a date needs `DATE '...'` (Trino will not compare a date column with a varchar).
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, decimal.Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC).replace(tzinfo=None)
        return f"TIMESTAMP '{value.isoformat(sep=' ', timespec='milliseconds')}'"
    if isinstance(value, _dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no Athena literal for a parameter of type {type(value).__name__}")


def _athena_arrow_type(column: Mapping[str, Any]) -> pa.DataType:
    kind = column.get("Type", "varchar").lower()
    simple = {
        "varchar": pa.string(),
        "char": pa.string(),
        "string": pa.string(),
        "tinyint": pa.int8(),
        "smallint": pa.int16(),
        "integer": pa.int32(),
        "int": pa.int32(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "float": pa.float32(),
        "real": pa.float32(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("ms"),
    }
    if kind in simple:
        return simple[kind]
    if kind == "decimal":
        return pa.decimal128(int(column.get("Precision") or 38), int(column.get("Scale") or 0))
    # arrays, maps, rows, json, varbinary, time zones: kept as Athena's text rendering.
    return pa.string()


def _athena_value(text: str, arrow_type: pa.DataType) -> Any:
    if pa.types.is_string(arrow_type):
        return text
    if pa.types.is_integer(arrow_type):
        return int(text)
    if pa.types.is_floating(arrow_type):
        return float(text)  # Athena writes NaN / Infinity, which float() reads
    if pa.types.is_boolean(arrow_type):
        return text.lower() == "true"
    if pa.types.is_date(arrow_type):
        return _dt.date.fromisoformat(text)
    if pa.types.is_timestamp(arrow_type):
        return _dt.datetime.fromisoformat(text)
    if pa.types.is_decimal(arrow_type):
        return decimal.Decimal(text)
    raise TypeError(f"unhandled Athena result type {arrow_type}")


def athena_results_to_arrow(pages: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Turn GetQueryResults pages into one typed Arrow table.

    Athena returns every value as text (a missing `VarCharValue` is NULL) and the column types in
    ResultSetMetadata; a SELECT's first page starts with a row of column labels, which is dropped.
    """
    columns: list[Mapping[str, Any]] | None = None
    cells: list[list[str | None]] = []
    for page_no, page in enumerate(pages):
        result_set = page["ResultSet"]
        if columns is None:
            columns = list(result_set.get("ResultSetMetadata", {}).get("ColumnInfo", []))
        rows = [[d.get("VarCharValue") for d in row.get("Data", [])] for row in result_set.get("Rows", [])]
        if page_no == 0 and rows:
            labels = [c.get("Label", c["Name"]) for c in columns]
            if rows[0] == labels or rows[0] == [c["Name"] for c in columns]:
                rows = rows[1:]
        cells.extend(rows)
    columns = columns or []
    arrays = {}
    for i, column in enumerate(columns):
        arrow_type = _athena_arrow_type(column)
        values = [None if row[i] is None else _athena_value(row[i], arrow_type) for row in cells]
        arrays[column["Name"]] = pa.array(values, type=arrow_type)
    return pa.table(arrays) if arrays else pa.table({})


class AthenaWarehouse(AwsClientConfig, WarehouseResource):
    """Amazon Athena with boto3: parameterised StartQueryExecution, polling, typed paged results.

    Not dagster-aws's `AthenaClientResource`: its client takes no region or endpoint (so it cannot be
    pointed at a test server), no ExecutionParameters (only string-built SQL), and returns untyped string
    tuples read back from the CSV in S3. The boto3 settings are `AwsClientConfig`'s.
    """

    database: str = Field(description="Glue/Athena database the query runs in.")
    workgroup: str = Field(default="primary", description="Athena workgroup.")
    output_location: str | None = Field(
        default=None,
        description="s3:// prefix for query results; None uses the workgroup's configured location.",
    )
    poll_timeout_s: float = Field(default=1800.0, description="Give up (and cancel the query) after this many seconds.")
    poll_max_interval_s: float = Field(default=5.0, description="Longest wait between two status polls.")

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Start the query with positional ExecutionParameters, wait for it, page its results into Arrow."""
        query, names = bind_style(sql, "qmark")
        _used_params(names, params)  # the check for missing values
        client = self.aws_client("athena")
        request: dict[str, Any] = {
            "QueryString": query,
            "QueryExecutionContext": {"Database": self.database},
            "WorkGroup": self.workgroup,
        }
        if names:  # positional: one literal per `?`, in order, repeats included
            request["ExecutionParameters"] = [athena_literal(params[n]) for n in names]  # type: ignore[index]
        if self.output_location:
            request["ResultConfiguration"] = {"OutputLocation": self.output_location}
        execution_id = client.start_query_execution(**request)["QueryExecutionId"]
        dg.get_dagster_logger().info(f"Athena query {execution_id} started in workgroup {self.workgroup}")
        self._wait(client, execution_id)
        paginator = client.get_paginator("get_query_results")
        pages = paginator.paginate(QueryExecutionId=execution_id, PaginationConfig={"PageSize": 1000})
        return athena_results_to_arrow(pages)

    def _wait(self, client: Any, execution_id: str) -> None:
        deadline = time.monotonic() + self.poll_timeout_s
        delay = 0.2
        while True:
            status = client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return
            if state in ("FAILED", "CANCELLED"):
                reason = status.get("StateChangeReason") or "no reason given"
                error = status.get("AthenaError") or {}
                detail = f" [{error.get('ErrorCategory')}/{error.get('ErrorType')}]" if error else ""
                raise AthenaQueryError(f"Athena query {execution_id} {state}: {reason}{detail}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                try:  # don't leave a query scanning (and billing) after we stop waiting for it
                    client.stop_query_execution(QueryExecutionId=execution_id)
                except Exception:  # noqa: BLE001 - the timeout is the error worth reporting
                    pass
                raise TimeoutError(
                    f"Athena query {execution_id} still {state} after {self.poll_timeout_s:.0f} s; cancelled"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.6, self.poll_max_interval_s)
