"""`[group, "source_candidates"]`: the connector's query for the partition, enriched and validated where the data
lives (push-down, `domain.pushdown`): the warehouse writes the partition's candidates and its rejected rows itself;
the run receives only the counts."""

import time
from collections.abc import Collection
from typing import Any

import dagster as dg

from engage_assets.assets.dbt import WAREHOUSE_POOL, mart_asset_key
from engage_assets.assets.keys import refuse_failed_marts
from engage_assets.assets.program.checks import source_check_result, source_check_spec
from engage_assets.assets.program.common import counts_md, program_tags, stage_key
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, each_partition
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.join_buckets import MAX_HASH_BUCKETS, Bucket, range_bounds, split
from engage_assets.domain.pushdown import SourcePlan, context_probe_sql
from engage_assets.domain.sources import SchemaDriftError, check_schema, probe_sql
from resources.engagement.base import EngagementStore
from resources.staging import RejectionLogResource
from resources.warehouse.base import StageTarget, WarehouseResource, warehouse_key

# The customer ids sampled to cut the range buckets: 4,096 keeps each bucket within a few % of its share.
ID_SAMPLE_ROWS = 4096


def partition_params(program: ProgramConfig, window: PartitionWindow) -> dict[str, Any]:
    """The bind parameters of a partition's push-down statements."""
    return {**window.params(program.programId), "partition_key": window.partition_key}


def source_plan(
    program: ProgramConfig, warehouse: WarehouseResource, params: dict[str, Any], erased: bool
) -> SourcePlan:
    """The source SQL for the warehouse's dialect, typed by the drift probe; a schema drift fails the run before
    anything is read in bulk."""
    connector = program.connector
    probe = warehouse.query_arrow(probe_sql(program), params)
    try:
        check_schema(probe.schema, connector.requiredColumns, f"{connector.connectorId} ({connector.config.table})")
    except SchemaDriftError as e:
        raise dg.Failure(description=str(e)) from None
    context = warehouse.query_arrow(context_probe_sql(probe.column_names))
    return SourcePlan(
        program,
        {f.name: f.type for f in probe.schema},
        {f.name: f.type for f in context.schema if f.name not in probe.column_names},
        erased=erased,
        dialect=warehouse.dialect,
    )


def customer_buckets(
    plan: SourcePlan, warehouse: WarehouseResource, params: dict[str, Any]
) -> tuple[str, list[Bucket | None]]:
    """How the source stage's statements are split (its `customer_join` metadata) and the buckets of customers:
    one statement, or one per bucket when the warehouse joins in buckets and the source is large: ranges of
    `customer_id` cut at a sample's quantiles (text ids), else hash buckets."""
    buckets = 1
    if warehouse.joins_in_buckets:
        buckets = warehouse.source_buckets(warehouse.query_arrow(plan.source_rows_sql(), params).column("n")[0].as_py())
    if buckets <= 1:
        return "one statement", split(1)
    sample_sql = plan.id_sample_sql(ID_SAMPLE_ROWS) if ID_SAMPLE_ROWS else None
    sample = warehouse.query_arrow(sample_sql, params).column("customer_id").to_pylist() if sample_sql else []
    bounds = range_bounds(sample, buckets)
    if not bounds:  # ids that are not text, or no id in the sample: hash buckets
        buckets = min(buckets, MAX_HASH_BUCKETS)
        return f"{buckets} hash buckets of customer_id", split(buckets)
    return f"{len(bounds) + 1} ranges of customer_id", split(buckets, bounds)


def source_partition(
    program: ProgramConfig,
    warehouse: WarehouseResource,
    stage_root: str,
    erased: Collection[str],
    window: PartitionWindow,
) -> tuple[str, dict[str, Any]]:
    """One partition's source stage in the warehouse: its rejected rows and its candidates written there (a re-run
    replaces both), the counts read back; returns where the candidates are and the partition's metadata."""
    params = {**partition_params(program, window), "erased": sorted(erased)}
    t0 = time.perf_counter()
    with warehouse.session():  # one connection for the partition's statements
        plan = source_plan(program, warehouse, params, erased=bool(erased))
        # A large source is joined with the customers bucket by bucket, each join within the warehouse's memory.
        join, buckets = customer_buckets(plan, warehouse, params)
        target = StageTarget(stage_root, program.group, "rejections", window.partition_key, "source_candidates")
        rejections_at = warehouse.write_rows_of(plan.rejections_sqls(buckets), params, target, one_file=True)
        rows = StageTarget(stage_root, program.group, "source_candidates", window.partition_key)
        rows_at = warehouse.write_rows_of(plan.valid_rows_sqls(buckets), params, rows)
        counts_sql = plan.written_counts_sql(warehouse.rows_relation(target), warehouse.rows_relation(rows))
        erased_rows = warehouse.query_arrow(plan.erased_sql(), params).column("n")[0].as_py() if erased else 0
        figures = plan.figures(warehouse.query_arrow(counts_sql, params), erased_rows)
    return rows_at, {
        "dagster/row_count": figures.valid,
        "rows_read": figures.rows_read,
        "excluded_erased": figures.erased,
        "rejected_invalid": sum(figures.invalid.values()),
        "outside_marketplaces": figures.outside_marketplaces,
        "rejections": counts_md(figures.invalid, "reason") if figures.invalid else "none",
        "rejections_path": rejections_at,
        "stage_path": rows_at,
        "customer_join": join,
        "as_of_date": window.end.isoformat(),
        "query_seconds": round(time.perf_counter() - t0, 2),
    }


def source_asset(program: ProgramConfig, parts: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """The program's `source_candidates` asset: it reads the connector's table and the customer marts."""
    connector = program.connector
    marts = [mart_asset_key(connector.config.table), mart_asset_key("customers"), mart_asset_key("offer_history")]
    # The connector's `type` picks the engine: `athena` reads through the `athena_warehouse` resource (Athena in
    # production), every other type through `warehouse` (Snowflake in production); DuckDB for both locally.
    engine = warehouse_key(connector.type)

    @dg.asset(
        key=stage_key(program, "source_candidates"),
        group_name=program.group,
        partitions_def=parts,
        pool=WAREHOUSE_POOL,
        tags=program_tags(program),
        backfill_policy=SINGLE_RUN,
        deps=marts,
        kinds={"duckdb" if connector.type != "snowflake" else "snowflake", "parquet"},
        check_specs=[source_check_spec(program)],
        required_resource_keys={engine, "rejections", "engagement"},
        description=f"{program.programName}: the `{connector.connectorId}` query for the partition, with customer "
        "context, computed in the warehouse (nothing is pulled into the run): the partition's valid candidates, "
        "written by the warehouse itself (locally a Parquet file DuckDB writes, `stage_path`, or a folder of one file "
        "per bucket of customers when the source is larger than one join fits in DuckDB's memory, `customer_join`; a "
        "table per program on Snowflake). Rows whose customer is unknown, with a NULL required "
        "field no filter judges, or outside the program's marketplaces are rejected with a reason into the "
        "rejection log (`rejections_path`); GDPR-erased customers are left out without a trace.",
    )
    def source_candidates(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Each partition of the run computed in the warehouse, then the empty-source check over them."""
        refuse_failed_marts(context, program, marts)
        # The resource key depends on the connector, so the resources are named in the decorator, not as arguments.
        warehouse: WarehouseResource = getattr(context.resources, engine)
        rejections: RejectionLogResource = context.resources.rejections
        engagement: EngagementStore = context.resources.engagement
        # Customers erased under GDPR never become candidates again, and leave no trace in the rejection logs.
        erased = engagement.deleted_customers()
        rows_read: dict[str, int] = {}

        def one(window: PartitionWindow, _: Any) -> tuple[str, dict[str, Any]]:
            where, meta = source_partition(program, warehouse, rejections.base_path, erased, window)
            rows_read[window.partition_key] = meta["rows_read"]
            return where, meta

        each_partition(context, parts, None, one)
        return dg.MaterializeResult(check_results=[source_check_result(program, rows_read)])

    return source_candidates
