"""Production warehouse for sources that live in S3 (`order_tracking`): Amazon Athena with boto3.

Queries run with positional ExecutionParameters (each a typed SQL literal, `athena_literal`); the status poll backs
off with tenacity and gives up (cancelling the query) after `poll_timeout_s`; results are paged into typed Arrow
(`athena_results_to_arrow`).
"""

from __future__ import annotations

import datetime as _dt
import decimal
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import dagster as dg
import pyarrow as pa
from pydantic import Field
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

from engage_assets.domain.pushdown import PARTITION_COLUMN
from resources.aws import AwsClientConfig
from resources.warehouse.base import (
    StageTarget,
    WarehouseResource,
    bind_lists,
    bind_style,
    until_deadline,
    used_params,
)

_TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


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
        values = [None if (text := row[i]) is None else _athena_value(text, arrow_type) for row in cells]
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
    stage_location: str | None = Field(
        default=None,
        description="s3:// prefix where Athena UNLOADs the push-down's stage rows (Parquet): "
        "`<group>__source_candidates/engage_partition_key=<pk>/` and `<group>__rejections/stage=<stage>/…`.",
    )
    stage_database: str = Field(
        default="engage_stages",
        description="Glue database holding a table over each of those prefixes (partition projection on `stage` "
        "and `engage_partition_key`), which the next stage's statement reads.",
    )
    poll_timeout_s: float = Field(default=1800.0, description="Give up (and cancel the query) after this many seconds.")
    poll_max_interval_s: float = Field(default=5.0, description="Longest wait between two status polls.")

    dialect: ClassVar[str] = "trino"

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Start the query with positional ExecutionParameters, wait for it, page its results into Arrow."""
        client, execution_id = self._run(sql, params)
        paginator = client.get_paginator("get_query_results")
        pages = paginator.paginate(QueryExecutionId=execution_id, PaginationConfig={"PageSize": 1000})
        return athena_results_to_arrow(pages)

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> tuple[Any, str]:
        """Start the statement and wait until it succeeded; (client, execution id)."""
        listed, params = bind_lists(sql, params, "expand")  # a list: one execution parameter per value
        query, names = bind_style(listed, "qmark")
        values = used_params(names, params)  # also the check for missing values
        client = self.aws_client("athena")
        request: dict[str, Any] = {
            "QueryString": query,
            "QueryExecutionContext": {"Database": self.database},
            "WorkGroup": self.workgroup,
        }
        if names:  # positional: one literal per `?`, in order, repeats included
            request["ExecutionParameters"] = [athena_literal(values[n]) for n in names]
        if self.output_location:
            request["ResultConfiguration"] = {"OutputLocation": self.output_location}
        execution_id = client.start_query_execution(**request)["QueryExecutionId"]
        dg.get_dagster_logger().info(f"Athena query {execution_id} started in workgroup {self.workgroup}")
        self._wait(client, execution_id)
        return client, execution_id

    def _prefix(self, target: StageTarget) -> str:
        if not self.stage_location:
            raise ValueError(
                "AthenaWarehouse.stage_location is not set: the push-down needs an s3:// prefix to write to"
            )
        stage = "" if target.stage is None else f"stage={target.stage}/"
        base = self.stage_location.rstrip("/")
        return f"{base}/{target.group}__{target.name}/{stage}{PARTITION_COLUMN}={target.partition_key}/"

    def write_rows(self, sql: str, params: Mapping[str, Any] | None, target: StageTarget) -> str:
        """Athena UNLOADs the rows as Parquet under the partition's prefix, emptied first (UNLOAD writes only to
        an empty prefix; a re-run replaces)."""
        prefix = self._prefix(target)
        bucket, _, key = prefix.removeprefix("s3://").partition("/")
        s3 = self.aws_client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        self._run(f"UNLOAD ({sql}) TO '{prefix}' WITH (format = 'PARQUET', compression = 'ZSTD')", params)
        return prefix

    def rows_relation(self, target: StageTarget) -> str:
        """The partition's rows through the Glue table over the stage prefix (its partition columns included)."""
        stage = "" if target.stage is None else f" AND stage = '{target.stage}'"
        table = f"{self.stage_database}.{target.group}__{target.name}"
        return f"(SELECT * FROM {table} WHERE {PARTITION_COLUMN} = :partition_key{stage})"

    def _wait(self, client: Any, execution_id: str) -> None:
        """Poll the query's status (0.2 s, growing 1.6x up to `poll_max_interval_s`) until it ends; cancel it
        after `poll_timeout_s`.  A failing status request is not retried here: botocore's retries cover it."""
        polling = Retrying(
            retry=retry_if_result(lambda status: status["State"] not in _TERMINAL_STATES),
            stop=stop_after_delay(self.poll_timeout_s),
            wait=until_deadline(
                wait_exponential(multiplier=0.2, exp_base=1.6, max=self.poll_max_interval_s), self.poll_timeout_s
            ),
        )
        try:
            status = polling(
                lambda: client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]
            )
        except RetryError as exc:
            state = exc.last_attempt.result()["State"]
            try:  # don't leave a query scanning (and billing) after we stop waiting for it
                client.stop_query_execution(QueryExecutionId=execution_id)
            except Exception:  # noqa: BLE001 - the timeout is the error worth reporting
                pass
            raise TimeoutError(
                f"Athena query {execution_id} still {state} after {self.poll_timeout_s:.0f} s; cancelled"
            ) from None
        if status["State"] != "SUCCEEDED":
            reason = status.get("StateChangeReason") or "no reason given"
            error = status.get("AthenaError") or {}
            detail = f" [{error.get('ErrorCategory')}/{error.get('ErrorType')}]" if error else ""
            raise AthenaQueryError(f"Athena query {execution_id} {status['State']}: {reason}{detail}")
