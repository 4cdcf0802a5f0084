"""`[group, "warehouse_export"]`: the stored candidates as Parquet per partition, a warehouse table analysts query.

In the warehouse pool, which the `gdpr_erasure` job's rewrite of past exports shares: the two never run at once, so
the rewrite never races an export being written.  Customers deleted (GDPR) while the run was under way are not
exported (the deletions are re-read just before the write).  The partition is read and written a record batch at a
time (`ExportResource.write_partition_batches`)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pyarrow as pa

from engage_assets.assets.dbt import WAREHOUSE_POOL
from engage_assets.assets.program.common import model_versions, program_tags, stage_key, without_customers
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, each_partition
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from resources.batches import BATCHES, ParquetBatches
from resources.engagement.base import EngagementStore
from resources.exports.base import ExportResource


def export_asset(program: ProgramConfig, parts: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """The program's `warehouse_export` asset, reading `offers`, after `stored_candidates`."""
    g = program.group

    @dg.asset(
        key=stage_key(program, "warehouse_export"),
        group_name=g,
        partitions_def=parts,
        tags=program_tags(program),
        pool=WAREHOUSE_POOL,
        backfill_policy=SINGLE_RUN,
        kinds={"parquet"},
        ins={"offers": dg.AssetIn(stage_key(program, "offers"), metadata=BATCHES)},
        deps=[stage_key(program, "stored_candidates")],
        description="The stored candidates as Parquet per partition, registered as the warehouse table "
        "`exports.<program>` analysts can query.",
    )
    def warehouse_export(
        context: dg.AssetExecutionContext, offers: Any, exports: ExportResource, engagement: EngagementStore
    ) -> dg.MaterializeResult:
        """Export each partition of the run, one after another, then (re)register the table over every exported
        partition."""

        def one(window: PartitionWindow, offers: ParquetBatches) -> tuple[None, dict[str, Any]]:
            erased, excluded = engagement.deleted_customers(), [0]
            versions = model_versions(offers.schema.empty_table())

            def batches() -> Iterator[pa.Table]:
                for table in offers.tables():
                    table, dropped = without_customers(table, erased)
                    excluded[0] += dropped
                    yield pipeline.export_table(program, table, window.partition_key, versions)

            path, rows = exports.write_partition_batches(g, window.partition_key, batches())
            return None, {"dagster/row_count": rows, "excluded_erased": excluded[0], "path": path}

        each_partition(context, parts, offers, one)
        return dg.MaterializeResult(metadata={"table": exports.register(g)})

    return warehouse_export
