"""A connector's `type` selects the engine (issue #13, item 6): `athena` reads through Athena, `snowflake` through
Snowflake in production; both through the embedded DuckDB file locally.  The Athena read is checked end to end
against a moto server whose query results are seeded with its results-backend API."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pytest
import sqlglot

from engage_assets.assets.program.partitions import partitions_for
from engage_assets.assets.program.source import source_asset
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.config.loader import load_program
from engage_assets.domain.pushdown import SOURCE_VALIDATION, ChainPlan
from engage_assets.domain.source_columns import CONTEXT_COLUMNS
from engage_assets.domain.sources import UNKNOWN_CUSTOMER_REASON
from resources.engagement.sqlite import SqliteEngagementStore
from resources.staging import ArrowParquetIOManager, RejectionLogResource
from resources.warehouse.athena import AthenaWarehouse
from resources.warehouse.base import StageTarget, WarehouseResource
from tests.athena_moto import athena_col, athena_row, seed_athena_results

CONFIGS = Path(__file__).resolve().parents[1] / "program_configs"
REGION = "eu-west-2"  # moto keeps one Athena result queue per region: this test's own


def _program(name: str) -> ProgramConfig:
    program = load_program(CONFIGS / f"{name}.yaml")
    assert isinstance(program, ProgramConfig)
    return program


def _source_keys(defs: dg.Definitions, group: str) -> set[str]:
    asset = defs.resolve_assets_def(dg.AssetKey([group, "source_candidates"]))
    return set(asset.required_resource_keys)


def test_prod_reads_athena_connectors_through_athena_and_snowflake_ones_through_snowflake(monkeypatch, tmp_path):
    from tests.test_prod_definitions import PROD_ENV

    monkeypatch.setenv("ENGAGE_ENV", "prod")
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    for k, v in {**PROD_ENV, "ENGAGE_OUTCOME_TABLE": "engage-outcomes"}.items():
        monkeypatch.setenv(k, v)
    from engage_assets.definitions import build_definitions

    defs = build_definitions()
    refunds, churn = _program("proactive_refunds"), _program("churn_prevention")
    assert refunds.connector.type == "athena" and churn.connector.type == "snowflake"
    assert "athena_warehouse" in _source_keys(defs, refunds.group)
    assert "warehouse" not in _source_keys(defs, refunds.group)
    assert "warehouse" in _source_keys(defs, churn.group)
    athena = defs.resources["athena_warehouse"]
    assert isinstance(athena, AthenaWarehouse)
    assert athena.database == "engage" and athena.region_name == "eu-west-1"
    assert athena.output_location == "s3://engage-exports/athena-results/"
    assert type(defs.resources["warehouse"]).__name__ == "SnowflakeWarehouse"


class RefusingWarehouse(WarehouseResource):
    """The wrong engine for an Athena connector: any query through it fails the test."""

    def query_arrow(self, sql: str, params: Any = None) -> pa.Table:
        raise AssertionError(f"an athena connector queried the default warehouse: {sql[:80]}")

    def write_rows(self, sql: str, params: Any, target: Any) -> str:
        raise AssertionError(f"an athena connector wrote through the default warehouse: {sql[:80]}")

    def rows_relation(self, target: Any) -> str:
        raise AssertionError("an athena connector read through the default warehouse")


SOURCE_COLUMNS = [
    athena_col("customer_id", "varchar"),
    athena_col("order_id", "varchar"),
    athena_col("delivery_date", "date"),
    athena_col("delay_days", "integer"),
    athena_col("order_value_usd", "double"),
    athena_col("item_condition", "varchar"),
    athena_col("customer_complaints", "integer"),
]


def test_an_athena_connector_runs_its_query_on_athena(moto_endpoint, tmp_path):
    """Pushed down (#14): the drift probe, the context probe, the rejections' UNLOAD, the counts and the candidates'
    UNLOAD all run on Athena, in Trino's dialect (sqlglot parses each as trino), the day a typed parameter."""
    program = _program("proactive_refunds")
    workgroup = f"engage-{uuid.uuid4().hex[:8]}"
    client = boto3.client("athena", region_name=REGION, endpoint_url=moto_endpoint)
    client.create_work_group(Name=workgroup, Configuration={"ResultConfiguration": {"OutputLocation": "s3://r/x/"}})
    bucket = f"stages-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    stale = "athena/proactive_refunds__source_candidates/engage_partition_key=2026-11-20/old.parquet"
    s3.put_object(Bucket=bucket, Key=stale, Body=b"a previous run's file")
    names = [c["Name"] for c in SOURCE_COLUMNS]
    context = [athena_col(c, "varchar") for c in CONTEXT_COLUMNS]
    counts = [athena_col("filter_id", "varchar"), athena_col("reason", "varchar"), athena_col("n", "bigint")]
    seed_athena_results(
        moto_endpoint,
        [
            {"rows": [athena_row(*names)], "column_info": SOURCE_COLUMNS},  # the drift probe: no rows
            {"rows": [athena_row(*CONTEXT_COLUMNS)], "column_info": context},  # the context probe
            {"rows": [], "column_info": []},  # UNLOAD of the rejected rows
            {"rows": [], "column_info": []},  # UNLOAD of the candidates
            {  # the counts of what was written: one order of a customer the warehouse does not know, no candidate
                "rows": [
                    athena_row("filter_id", "reason", "n"),
                    athena_row(SOURCE_VALIDATION, UNKNOWN_CUSTOMER_REASON, "1"),
                    athena_row(None, None, "0"),
                ],
                "column_info": counts,
            },
        ],
        region=REGION,
    )
    athena = AthenaWarehouse(
        region_name=REGION,
        endpoint_url=moto_endpoint,
        database="ecommerce",
        workgroup=workgroup,
        stage_location=f"s3://{bucket}/athena/",
    )
    asset = source_asset(program, partitions_for(program))
    result = dg.materialize(
        [asset],
        partition_key="2026-11-20",
        resources={
            "athena_warehouse": athena,
            "warehouse": RefusingWarehouse(),
            "rejections": RejectionLogResource(base_path=str(tmp_path / "rejections")),
            "engagement": SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite")),
            "io_manager": ArrowParquetIOManager(base_path=str(tmp_path / "stages")),
        },
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    [mat] = result.asset_materializations_for_node(asset.node_def.name)
    assert mat.metadata["rows_read"].value == 1  # the count seeded in Athena's results
    assert mat.metadata["rejected_invalid"].value == 1 and mat.metadata["dagster/row_count"].value == 0
    executions = client.list_query_executions(WorkGroup=workgroup)["QueryExecutionIds"]
    queries = [client.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in executions]
    assert len(queries) == 5 and all(q["QueryExecutionContext"]["Database"] == "ecommerce" for q in queries)
    reads = [q for q in queries if "marts.order_tracking" in q["Query"]]
    assert len(reads) == 3  # the probe and the two UNLOADs; the counts read what they wrote
    unloads = [q["Query"] for q in queries if q["Query"].startswith("UNLOAD")]
    assert sorted(u.rsplit(" TO ", 1)[1].split("'")[1] for u in unloads) == [
        f"s3://{bucket}/athena/proactive_refunds__rejections/stage=source_candidates/engage_partition_key=2026-11-20/",
        f"s3://{bucket}/athena/proactive_refunds__source_candidates/engage_partition_key=2026-11-20/",
    ]
    for q in queries:  # Athena's dialect: Trino (no `date - n`, which Athena rejects)
        text = q["Query"].replace("?", "NULL")
        if text.startswith("UNLOAD ("):
            text = text.removeprefix("UNLOAD (").rsplit(") TO ", 1)[0]
        sqlglot.parse_one(text, read="trino")
        assert "- 365" not in text and "- 91" not in text
    # The chain statement's look-backs, as Athena will run them: Trino's date functions.
    target = StageTarget("unused", program.group, "source_candidates", "2026-11-20")
    chain = ChainPlan(program, athena.rows_relation(target), [*names, *CONTEXT_COLUMNS], "trino")
    for text in (chain.lookbacks_sql(), chain.eligible_sql(), chain.rejections_sql()):
        assert "DATE_DIFF('DAY'" in text and "INTERVAL '365' DAY" in text and "- 365" not in text
        sqlglot.parse_one(text.replace(":", "__p_"), read="trino")
    # the partition's day reached Athena as a typed execution parameter, not spliced into the text
    assert all("DATE '2026-11-20'" in q.get("ExecutionParameters", []) for q in reads)
    assert not any("DATE '2026-11-20'" in q["Query"] for q in queries)
    # the previous run's files under the partition's prefix were removed before the UNLOAD
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=stale)


@pytest.mark.parametrize("connector_type", ["athena", "snowflake", "duckdb"])
def test_locally_every_connector_type_reads_the_embedded_warehouse(connector_type, monkeypatch, tmp_path):
    from engage_assets.settings import Settings
    from resources.by_env import local_resources
    from resources.warehouse.base import warehouse_key

    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    resources = local_resources(Settings())
    assert type(resources[warehouse_key(connector_type)]).__name__ == "DuckDBWarehouse"
