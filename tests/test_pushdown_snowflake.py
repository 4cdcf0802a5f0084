"""The push-down on Snowflake (issue #14, item 5): the SQL transpiled to Snowflake's dialect runs against fakesnow's
server through the real connector, writes the program's stage tables (candidates and rejections, a re-run replacing
its partition) and gives the funnel DuckDB gives on the same rows."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import sqlglot

from engage_assets.assets.program.eligible import eligible_partition
from engage_assets.assets.program.source import partition_params, source_partition, source_plan
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.config.loader import load_program
from engage_assets.domain.pushdown import ChainPlan
from engage_assets.domain.sources import PartitionWindow
from resources.warehouse.base import StageTarget
from resources.warehouse.duckdb import DuckDBWarehouse
from resources.warehouse.snowflake import SnowflakeWarehouse
from tests.pushdown_marts import AS_OF, DDL, PARTITION, inserts

CONFIGS = Path(__file__).resolve().parents[1] / "program_configs"
WINDOW = PartitionWindow(PARTITION, date(2026, 11, 9), AS_OF)
ERASED = {"K00002", "K00011"}
FIGURES = ("dagster/row_count", "rows_read", "excluded_erased", "rejected_invalid", "outside_marketplaces")
REJECTION = ("customer_id", "subject_id", "stage", "filter_id", "reason", "program_id", "partition_key")


def _churn() -> ProgramConfig:
    program = load_program(CONFIGS / "churn_prevention.yaml")
    assert isinstance(program, ProgramConfig)
    return program.model_copy(update={"marketplaces": ["US", "UK", "DE"]})  # FR customers set aside


@pytest.fixture(scope="module")
def snowflake(fakesnow_server):
    kwargs = fakesnow_server  # the session's server (conftest)
    wh = SnowflakeWarehouse(
        account=kwargs["account"],
        user=kwargs["user"],
        password=kwargs["password"],
        database="ENGAGE",
        schema="MARTS",
        warehouse="ENGAGE_WH",
        connection_args={k: kwargs[k] for k in ("host", "port", "protocol", "session_parameters")},
    )
    with wh.snowflake_resource().get_connection() as conn:
        cur = conn.cursor()
        for sql in ["CREATE DATABASE IF NOT EXISTS ENGAGE", "CREATE SCHEMA IF NOT EXISTS ENGAGE.MARTS"]:
            cur.execute(sql)
        cur.execute("CREATE SCHEMA IF NOT EXISTS ENGAGE.ENGAGE_STAGES")
        for sql in [*DDL, *inserts()]:
            cur.execute(sql)
    yield wh


@pytest.fixture(scope="module")
def duck(tmp_path_factory) -> DuckDBWarehouse:
    path = tmp_path_factory.mktemp("duck") / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        for sql in [*DDL, *inserts()]:
            con.execute(sql)
    return DuckDBWarehouse(path=str(path))


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


def _by_key(rows: list[dict], key: tuple[str, ...]) -> dict[tuple, dict]:
    return {tuple(r[k] for k in key): r for r in rows}


def _target() -> StageTarget:
    return StageTarget("unused", "churn_prevention", "source_candidates", PARTITION)


def test_the_snowflake_sql_is_snowflakes_own(snowflake):
    program = _churn()
    params = {**partition_params(program, WINDOW), "erased": sorted(ERASED)}
    plan = source_plan(program, snowflake, params, erased=True)
    sql = plan.valid_rows_sql()
    assert "isnan" not in sql.lower() and "= CAST('NaN' AS FLOAT)" in sql  # Snowflake has no IS_NAN
    assert "K00002" not in sql  # the erased ids are bound, never in the text
    chain = ChainPlan(program, snowflake.rows_relation(_target()), plan.columns, snowflake.dialect).eligible_sql()
    assert "DATEDIFF(DAY" in chain and "INTERVAL '365 DAY'" in chain  # the look-backs, as Snowflake spells them
    for text in (sql, chain):
        sqlglot.parse_one(text.replace(":", "__p_"), read="snowflake")


def test_snowflake_gives_duckdbs_funnel_and_writes_its_stage_tables(snowflake, duck, tmp_path):
    program = _churn()
    _, want = source_partition(program, duck, str(tmp_path), ERASED, WINDOW)
    table, got = source_partition(program, snowflake, "unused", ERASED, WINDOW)
    assert table == "ENGAGE_STAGES.CHURN_PREVENTION__SOURCE_CANDIDATES"
    assert {k: got[k] for k in FIGURES} == {k: want[k] for k in FIGURES}
    assert got["rejected_invalid"] > 0 and got["outside_marketplaces"] > 0 and got["excluded_erased"] == 2

    eligible_duck, emeta_duck = eligible_partition(program, duck, str(tmp_path), WINDOW)
    eligible_snow, emeta_snow = eligible_partition(program, snowflake, "unused", WINDOW)
    removed = {k: v for k, v in emeta_duck.items() if k.startswith("removed/")}
    assert removed == {k: v for k, v in emeta_snow.items() if k.startswith("removed/")}
    assert sum(removed.values()) > 0 and 0 < eligible_snow.num_rows
    assert eligible_snow.column_names == eligible_duck.column_names
    want_rows = _by_key(eligible_duck.to_pylist(), ("customer_id",))
    got_rows = _by_key(eligible_snow.to_pylist(), ("customer_id",))
    assert set(got_rows) == set(want_rows)
    for key, row in want_rows.items():
        assert all(_same(row[c], got_rows[key][c]) for c in row), key

    # The rejected rows are in the program's rejections table, as DuckDB wrote them to Parquet.
    local = [
        *pq.read_table(want["rejections_path"]).to_pylist(),
        *pq.read_table(emeta_duck["rejections_path"]).to_pylist(),
    ]
    remote = snowflake.query_arrow(f"SELECT {', '.join(REJECTION)} FROM ENGAGE_STAGES.CHURN_PREVENTION__REJECTIONS")
    assert sorted(map(repr, remote.to_pylist())) == sorted(repr({k: r[k] for k in REJECTION}) for r in local)

    # A re-run replaces the partition's rows in both tables.
    source_partition(program, snowflake, "unused", ERASED, WINDOW)
    eligible_partition(program, snowflake, "unused", WINDOW)
    again = snowflake.query_arrow("SELECT count(*) AS n FROM ENGAGE_STAGES.CHURN_PREVENTION__REJECTIONS")
    assert again.column("n")[0].as_py() == len(local)
    rows = snowflake.query_arrow("SELECT count(*) AS n FROM ENGAGE_STAGES.CHURN_PREVENTION__SOURCE_CANDIDATES")
    assert rows.column("n")[0].as_py() == want["dagster/row_count"]
