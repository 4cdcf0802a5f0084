"""`[group, "source_candidates"]`: the connector's query for the partition, with customer context; invalid rows out."""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.assets.dbt import WAREHOUSE_POOL, failed_dbt_tests, mart_asset_key
from engage_assets.assets.program.checks import source_check_result, source_check_spec
from engage_assets.assets.program.common import counts_md, program_tags, stage_key
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, stream_partitions
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramBase, ProgramConfig
from engage_assets.domain.filters import columns_judged
from engage_assets.domain.marketplaces import MARKETPLACE_FILTER, split_marketplaces
from engage_assets.domain.sources import SchemaDriftError, check_schema, enrichment_sql, probe_sql, split_invalid
from resources.engagement.base import EngagementStore
from resources.staging import RejectionLogResource
from resources.warehouse.base import WarehouseResource, warehouse_key


def rejection_reasons(invalid: pa.Table) -> dict[str, int]:
    """{rejection_reason: rows} of the rejected rows."""
    reasons = {}
    if invalid.num_rows:
        for c in invalid.group_by("rejection_reason").aggregate([("rejection_reason", "count")]).to_pylist():
            reasons[c["rejection_reason"]] = c["rejection_reason_count"]
    return reasons


def source_partition(
    program: ProgramConfig,
    warehouse: WarehouseResource,
    rejections: RejectionLogResource,
    erased: pa.Array,
    window: PartitionWindow,
) -> tuple[pa.Table, dict[str, Any]]:
    """One partition's valid source rows and metadata; a schema drift fails the run before the full query."""
    connector = program.connector
    params = window.params(program.programId)
    probe = warehouse.query_arrow(probe_sql(program), params)
    try:
        check_schema(probe.schema, connector.requiredColumns, f"{connector.connectorId} ({connector.config.table})")
    except SchemaDriftError as e:
        raise dg.Failure(description=str(e)) from None
    t0 = time.perf_counter()
    table = warehouse.query_arrow(enrichment_sql(program, probe.column_names), params)
    rows_read = table.num_rows
    if len(erased):
        table = table.filter(pc.invert(pc.is_in(table.column("customer_id").cast(pa.string()), erased)))
    valid, invalid = split_invalid(table, connector.requiredColumns, columns_judged(program.ordered_filters()))
    # The program's marketplaces: a customer outside them never becomes a candidate (logged with its reason).
    valid, outside = split_marketplaces(valid, program.marketplaces)
    rej = pa.concat_tables(
        [
            pipeline.source_rejections(program, invalid),
            pipeline.source_rejections(program, outside, filter_id=MARKETPLACE_FILTER),
        ]
    )
    path = rejections.write(program.group, "source_candidates", window.partition_key, rej)
    reasons = rejection_reasons(invalid)
    return valid, {
        "dagster/row_count": valid.num_rows,
        "rows_read": rows_read,
        "excluded_erased": rows_read - table.num_rows,
        "rejected_invalid": invalid.num_rows,
        "outside_marketplaces": outside.num_rows,
        "rejections": counts_md(reasons, "reason") if reasons else "none",
        "rejections_path": path,
        "as_of_date": window.end.isoformat(),
        "query_seconds": round(time.perf_counter() - t0, 2),
    }


def refuse_failed_marts(context: dg.AssetExecutionContext, program: ProgramBase, marts: list[dg.AssetKey]) -> None:
    """Fail before reading anything when a blocking dbt test on a mart the program reads failed in the latest build
    (in any run: a `dagster asset materialize` of the program alone too), naming each test."""
    failed = failed_dbt_tests(context.instance, marts)
    if failed:
        raise dg.Failure(
            description=f"{program.programId}: not run, the warehouse's dbt tests failed on the marts it reads: "
            + "; ".join(failed)
            + ". Fix the data (or the test) and build the warehouse again (job warehouse_build, or `engage run`).",
            metadata={"failed_dbt_tests": dg.MetadataValue.json(failed)},
        )


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
        kinds={"duckdb" if connector.type != "snowflake" else "snowflake", "pyarrow"},
        check_specs=[source_check_spec(program)],
        required_resource_keys={engine, "rejections", "engagement"},
        description=f"{program.programName}: the `{connector.connectorId}` query for the partition, with customer "
        "context and offer history; rows whose customer is unknown, or with a NULL required field no filter "
        "judges, are rejected with a reason.",
    )
    def source_candidates(context: dg.AssetExecutionContext) -> Iterator[dg.Output | dg.AssetCheckResult]:
        """The valid source rows of each partition of the run, then the empty-source check over them."""
        refuse_failed_marts(context, program, marts)
        # The resource key depends on the connector, so the resources are named in the decorator, not as arguments.
        warehouse: WarehouseResource = getattr(context.resources, engine)
        rejections: RejectionLogResource = context.resources.rejections
        engagement: EngagementStore = context.resources.engagement
        # Customers erased under GDPR never become candidates again, and leave no trace in the rejection logs.
        erased = pa.array(sorted(engagement.deleted_customers()), pa.string())
        rows_read: dict[str, int] = {}

        def one(window: PartitionWindow, _: Any) -> tuple[pa.Table, dict[str, Any]]:
            table, meta = source_partition(program, warehouse, rejections, erased, window)
            rows_read[window.partition_key] = meta["rows_read"]
            return table, meta

        # A range's partitions are read as the IO manager writes the output: `rows_read` is complete after it.
        yield dg.Output(stream_partitions(context, parts, None, one))
        yield source_check_result(program, rows_read)

    return source_candidates
