"""Warehouse connectors against real engines: a DuckDB file (with real cross-process locks), the real
Snowflake connector talking to fakesnow's server, and boto3's Athena client talking to a moto server."""

import datetime as dt
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from decimal import Decimal

import boto3
import dagster as dg
import duckdb
import pyarrow as pa
import pytest
from botocore.stub import Stubber

from resources.warehouse.athena import AthenaQueryError, AthenaWarehouse, athena_literal, athena_results_to_arrow
from resources.warehouse.duckdb import DuckDBWarehouse, WarehouseLockedError
from resources.warehouse.snowflake import SnowflakeWarehouse
from tests.athena_moto import athena_col, athena_row, moto_api

PARAMS = {
    "partition_start": dt.date(2026, 11, 21),
    "partition_end": dt.date(2026, 11, 22),
    "as_of_date": dt.date(2026, 11, 22),
}


# --------------------------------------------------------------------------------------------- DuckDB


@pytest.fixture
def duck_path(tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    conn = duckdb.connect(path)
    conn.execute(
        """
        CREATE TABLE orders AS
        SELECT 'c' || i AS customer_id, DATE '2026-11-19' + i::INTEGER AS order_date, i * 10 AS amount
        FROM range(5) t(i)
        """
    )
    conn.close()
    return path


@contextmanager
def lock_held(path: str, seconds: float):
    """Another OS process that holds the file read-write (DuckDB's lock is per process) for `seconds`."""
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
        "time.sleep(float(sys.argv[2])); c.close()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_duckdb_binds_named_dates_and_returns_typed_arrow(duck_path):
    wh = DuckDBWarehouse(path=duck_path)
    table = wh.query_arrow(
        "SELECT customer_id, order_date, amount FROM orders "
        "WHERE order_date >= :partition_start AND order_date < :partition_end ORDER BY order_date",
        PARAMS,  # as_of_date is unused by this query and must not be bound
    )
    assert table.column_names == ["customer_id", "order_date", "amount"]
    assert table.schema.field("order_date").type == pa.date32()
    assert table.to_pylist() == [{"customer_id": "c2", "order_date": dt.date(2026, 11, 21), "amount": 20}]


def test_duckdb_missing_parameter_is_named(duck_path):
    with pytest.raises(KeyError, match="partition_end"):
        DuckDBWarehouse(path=duck_path).query_arrow("SELECT * FROM orders WHERE order_date < :partition_end", {})


def test_duckdb_is_read_only_by_default(duck_path):
    with pytest.raises(duckdb.Error, match="read-only"):
        DuckDBWarehouse(path=duck_path).query_arrow("CREATE TABLE sneaky AS SELECT 1 AS x")
    assert "sneaky" not in DuckDBWarehouse(path=duck_path).query_arrow("SHOW TABLES").column("name").to_pylist()


def test_duckdb_waits_for_a_writer_to_release_the_lock(duck_path):
    with lock_held(duck_path, 1.5):
        started = time.monotonic()
        table = DuckDBWarehouse(path=duck_path, lock_timeout_s=30).query_arrow("SELECT count(*) AS n FROM orders")
        waited = time.monotonic() - started
    assert table.column("n").to_pylist() == [5]
    assert waited >= 1.0  # it really was blocked, and got through once the writer left


def test_duckdb_lock_timeout_fails_with_a_clear_message(duck_path):
    with lock_held(duck_path, 30):
        started = time.monotonic()
        with pytest.raises(WarehouseLockedError, match="one writing process per file"):
            DuckDBWarehouse(path=duck_path, lock_timeout_s=0.7).query_arrow("SELECT 1")
        assert time.monotonic() - started < 5


def test_duckdb_missing_file_fails_at_once_without_retrying(tmp_path):
    started = time.monotonic()
    with pytest.raises(duckdb.IOException, match="does not exist"):
        DuckDBWarehouse(path=str(tmp_path / "absent.duckdb"), lock_timeout_s=30).query_arrow("SELECT 1")
    assert time.monotonic() - started < 2


def test_duckdb_columns_for_schema_checks(duck_path):
    assert DuckDBWarehouse(path=duck_path).columns("main.orders") == {
        "customer_id": "VARCHAR",
        "order_date": "DATE",
        "amount": "BIGINT",
    }
    with pytest.raises(duckdb.CatalogException):
        DuckDBWarehouse(path=duck_path).columns("main.no_such_table")


def test_duckdb_warehouse_as_a_dagster_resource(duck_path):
    partitions = dg.DailyPartitionsDefinition(start_date="2026-11-01")

    @dg.asset(partitions_def=partitions)
    def source_candidates(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
        start, end = context.partition_time_window
        table = warehouse.query_arrow(
            "SELECT * FROM orders WHERE order_date >= :partition_start AND order_date < :partition_end",
            {"partition_start": start.date(), "partition_end": end.date()},
        )
        return dg.MaterializeResult(metadata={"dagster/row_count": table.num_rows})

    result = dg.materialize(
        [source_candidates], partition_key="2026-11-20", resources={"warehouse": DuckDBWarehouse(path=duck_path)}
    )
    rows = result.asset_materializations_for_node("source_candidates")[0].metadata["dagster/row_count"].value
    assert rows == 1


# ------------------------------------------------------------------------------------------ Snowflake


def _connection_args(kwargs) -> dict:
    return {k: kwargs[k] for k in ("host", "port", "protocol", "session_parameters", "network_timeout")}


def _snowflake(kwargs) -> SnowflakeWarehouse:
    return SnowflakeWarehouse(
        account=kwargs["account"],
        user=kwargs["user"],
        password=kwargs["password"],
        database="ENGAGE",
        schema="RAW",
        warehouse="ENGAGE_WH",
        role="ENGAGE_READER",
        connection_args=_connection_args(kwargs),
    )


@pytest.fixture(scope="module")
def snowflake_orders(fakesnow_server):
    wh = _snowflake(fakesnow_server)
    with wh.snowflake_resource().get_connection() as conn:
        cur = conn.cursor()
        cur.execute("CREATE DATABASE IF NOT EXISTS ENGAGE")
        cur.execute("CREATE SCHEMA IF NOT EXISTS ENGAGE.RAW")
        cur.execute("CREATE OR REPLACE TABLE ENGAGE.RAW.ORDERS (CUSTOMER_ID VARCHAR, ORDER_DATE DATE, AMOUNT INT)")
        cur.execute(
            "INSERT INTO ENGAGE.RAW.ORDERS VALUES ('c1', '2026-11-20', 10), ('c2', '2026-11-21', 20), "
            "('c3', '2026-11-21', 30), ('x%4', '2026-11-21', 40), ('c5', '2026-11-22', 50)"
        )
    return fakesnow_server


def test_snowflake_binds_date_params_and_lowercases_columns(snowflake_orders):
    table = _snowflake(snowflake_orders).query_arrow(
        "SELECT CUSTOMER_ID, ORDER_DATE, AMOUNT FROM ORDERS "
        "WHERE ORDER_DATE >= :partition_start AND ORDER_DATE < :partition_end AND CUSTOMER_ID LIKE 'c%' "
        "ORDER BY CUSTOMER_ID",
        PARAMS,
    )
    assert table.column_names == ["customer_id", "order_date", "amount"]
    assert table.schema.field("order_date").type == pa.date32()
    # the LIKE 'c%' survived pyformat binding (a raw % would have broken `command % params`)
    assert table.to_pylist() == [
        {"customer_id": "c2", "order_date": dt.date(2026, 11, 21), "amount": 20},
        {"customer_id": "c3", "order_date": dt.date(2026, 11, 21), "amount": 30},
    ]


def test_snowflake_binds_an_id_list_one_parameter_per_value(snowflake_orders):
    ids = ["c1", "x%4", "c3' OR '1'='1", "c5\\' OR 1=1 --"]  # a quote, and a backslash (Snowflake's escape)
    table = _snowflake(snowflake_orders).query_arrow(
        "SELECT CUSTOMER_ID FROM ORDERS WHERE CUSTOMER_ID IN (:ids) ORDER BY CUSTOMER_ID", {"ids": ids}
    )
    assert table.column("customer_id").to_pylist() == ["c1", "x%4"]


def test_snowflake_empty_result_is_an_empty_table(snowflake_orders):
    table = _snowflake(snowflake_orders).query_arrow(
        "SELECT CUSTOMER_ID FROM ORDERS WHERE ORDER_DATE > :as_of_date", {"as_of_date": dt.date(2030, 1, 1)}
    )
    assert isinstance(table, pa.Table) and table.num_rows == 0 and table.column_names == ["customer_id"]


def test_snowflake_secret_from_env_var_inside_a_run(snowflake_orders, monkeypatch):
    """The production wiring: password from dg.EnvVar, resolved by Dagster, used by an asset."""
    monkeypatch.setenv("ENGAGE_TEST_SNOWFLAKE_PASSWORD", snowflake_orders["password"])
    warehouse = SnowflakeWarehouse(
        account=snowflake_orders["account"],
        user=snowflake_orders["user"],
        password=dg.EnvVar("ENGAGE_TEST_SNOWFLAKE_PASSWORD"),
        database="ENGAGE",
        schema="RAW",
        connection_args=_connection_args(snowflake_orders),
    )

    @dg.asset
    def order_count(warehouse: SnowflakeWarehouse) -> dg.MaterializeResult:
        table = warehouse.query_arrow(
            "SELECT COUNT(*) AS N FROM ORDERS WHERE ORDER_DATE = :d", {"d": dt.date(2026, 11, 21)}
        )
        return dg.MaterializeResult(metadata={"n": table.column("n")[0].as_py()})

    result = dg.materialize([order_count], resources={"warehouse": warehouse})
    assert result.asset_materializations_for_node("order_count")[0].metadata["n"].value == 3


# --------------------------------------------------------------------------------------------- Athena


@contextmanager
def athena_progression(endpoint: str, times: int):
    """Make moto's query executions advance one state per `times` status polls (QUEUED→RUNNING→SUCCEEDED)."""
    moto_api(
        endpoint,
        "/moto-api/state-manager/set-transition",
        {"model_name": "athena::execution", "transition": {"progression": "manual", "times": times}},
    )
    try:
        yield
    finally:
        moto_api(endpoint, "/moto-api/state-manager/unset-transition", {"model_name": "athena::execution"})


@pytest.fixture
def athena(moto_endpoint):
    wg = f"engage-{uuid.uuid4().hex[:8]}"
    client = boto3.client("athena", region_name="us-east-1", endpoint_url=moto_endpoint)
    client.create_work_group(
        Name=wg, Configuration={"ResultConfiguration": {"OutputLocation": "s3://athena-results/engage/"}}
    )
    warehouse = AthenaWarehouse(
        region_name="us-east-1",
        endpoint_url=moto_endpoint,
        database="order_tracking",
        workgroup=wg,
        poll_max_interval_s=0.05,
    )
    return warehouse, client, wg


ATHENA_COLUMNS = [
    athena_col("order_id", "varchar"),
    athena_col("items", "integer"),
    athena_col("total_cents", "bigint"),
    athena_col("weight", "double"),
    athena_col("delayed", "boolean"),
    athena_col("promised_date", "date"),
    athena_col("shipped_at", "timestamp"),
    athena_col("refund", "decimal", Precision=10, Scale=2),
]


def test_athena_passes_execution_parameters_and_types_results(athena, moto_endpoint):
    warehouse, client, wg = athena
    header = athena_row(*[c["Name"] for c in ATHENA_COLUMNS])  # Athena's first row of a SELECT: the labels
    rows = [
        athena_row("o-1", "2", "1999", "1.5", "true", "2026-11-21", "2026-11-21 08:30:00.123", "12.50"),
        athena_row("o-2", None, "25", "NaN", "false", "2026-11-22", "2026-11-22 23:59:59.000", None),
    ]
    moto_api(
        moto_endpoint,
        "/moto-api/static/athena/query-results",
        {"results": [{"rows": [header, *rows], "column_info": ATHENA_COLUMNS}]},
    )
    sql = (
        "SELECT * FROM shipments WHERE promised_date >= :partition_start AND promised_date < :partition_end "
        "AND carrier = :carrier AND promised_date <= :partition_end"
    )
    with athena_progression(moto_endpoint, times=2):  # several polls before SUCCEEDED
        table = warehouse.query_arrow(sql, {**PARAMS, "carrier": "O'Hare Freight"})

    [execution_id] = client.list_query_executions(WorkGroup=wg)["QueryExecutionIds"]
    execution = client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
    assert execution["Query"] == (
        "SELECT * FROM shipments WHERE promised_date >= ? AND promised_date < ? AND carrier = ? AND promised_date <= ?"
    )
    assert execution["ExecutionParameters"] == [
        "DATE '2026-11-21'",
        "DATE '2026-11-22'",
        "'O''Hare Freight'",
        "DATE '2026-11-22'",
    ]
    assert execution["QueryExecutionContext"]["Database"] == "order_tracking"
    assert execution["WorkGroup"] == wg

    assert table.schema == pa.schema(
        [
            ("order_id", pa.string()),
            ("items", pa.int32()),
            ("total_cents", pa.int64()),
            ("weight", pa.float64()),
            ("delayed", pa.bool_()),
            ("promised_date", pa.date32()),
            ("shipped_at", pa.timestamp("ms")),
            ("refund", pa.decimal128(10, 2)),
        ]
    )
    first, second = table.to_pylist()
    assert first == {
        "order_id": "o-1",
        "items": 2,
        "total_cents": 1999,
        "weight": 1.5,
        "delayed": True,
        "promised_date": dt.date(2026, 11, 21),
        "shipped_at": dt.datetime(2026, 11, 21, 8, 30, 0, 123000),
        "refund": Decimal("12.50"),
    }
    assert second["items"] is None and second["refund"] is None and second["delayed"] is False
    assert second["weight"] != second["weight"]  # NaN


def test_athena_query_without_params_sends_none_and_reads_empty_result(athena):
    warehouse, client, wg = athena
    table = warehouse.query_arrow("SELECT 1 WHERE false")
    [execution_id] = client.list_query_executions(WorkGroup=wg)["QueryExecutionIds"]
    assert "ExecutionParameters" not in client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
    assert table.num_rows == 0


def test_athena_cancelled_query_raises_with_state(athena, moto_endpoint):
    warehouse, client, wg = athena

    def cancel_when_started():
        for _ in range(200):
            ids = client.list_query_executions(WorkGroup=wg)["QueryExecutionIds"]
            if ids:
                client.stop_query_execution(QueryExecutionId=ids[0])
                return
            time.sleep(0.02)

    with athena_progression(moto_endpoint, times=10**6):  # never finishes on its own
        canceller = threading.Thread(target=cancel_when_started)
        canceller.start()
        with pytest.raises(AthenaQueryError, match="CANCELLED"):
            warehouse.query_arrow("SELECT * FROM shipments")
        canceller.join()


def test_athena_timeout_cancels_the_query(athena, moto_endpoint):
    warehouse, client, wg = athena
    warehouse = warehouse.model_copy(update={"poll_timeout_s": 0.5})
    with athena_progression(moto_endpoint, times=10**6):
        with pytest.raises(TimeoutError, match="cancelled"):
            warehouse.query_arrow("SELECT * FROM shipments")
        [execution_id] = client.list_query_executions(WorkGroup=wg)["QueryExecutionIds"]
        state = client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]["State"]
    assert state == "CANCELLED"


def test_athena_failed_query_reports_state_change_reason(monkeypatch):
    """moto never produces FAILED, so this one uses botocore's Stubber (responses checked against the API model)."""
    client = boto3.client("athena", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "RUNNING"}}})
    stub.add_response(
        "get_query_execution",
        {
            "QueryExecution": {
                "Status": {
                    "State": "FAILED",
                    "StateChangeReason": "COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved",
                    "AthenaError": {"ErrorCategory": 2, "ErrorType": 1006},
                }
            }
        },
    )
    monkeypatch.setattr(AthenaWarehouse, "aws_client", lambda self, service: client)
    with stub, pytest.raises(AthenaQueryError, match=r"q-1 FAILED: COLUMN_NOT_FOUND.*\[2/1006\]"):
        AthenaWarehouse(region_name="us-east-1", database="d", poll_max_interval_s=0.01).query_arrow("SELECT x")


def test_athena_pages_are_concatenated_and_only_the_first_header_dropped():
    columns = [athena_col("id", "bigint"), athena_col("name", "varchar")]
    pages = [
        {
            "ResultSet": {
                "Rows": [athena_row("id", "name"), athena_row("1", "a")],
                "ResultSetMetadata": {"ColumnInfo": columns},
            }
        },
        {
            "ResultSet": {
                "Rows": [athena_row("2", "name"), athena_row("3", "")],
                "ResultSetMetadata": {"ColumnInfo": columns},
            }
        },
    ]
    table = athena_results_to_arrow(pages)
    assert table.to_pylist() == [{"id": 1, "name": "a"}, {"id": 2, "name": "name"}, {"id": 3, "name": ""}]


def test_athena_literals():
    assert athena_literal(dt.date(2026, 11, 21)) == "DATE '2026-11-21'"
    assert athena_literal(dt.datetime(2026, 11, 21, 8, 30)) == "TIMESTAMP '2026-11-21 08:30:00.000'"
    assert athena_literal("it's") == "'it''s'"
    assert athena_literal(5) == "5" and athena_literal(True) == "true" and athena_literal(None) == "NULL"
    with pytest.raises(TypeError):
        athena_literal(object())
