"""`[group, "warehouse_export"]`: the stored candidates as Parquet per partition, a warehouse table analysts query."""

from typing import Any

import dagster as dg
import pyarrow as pa

from engage_assets.assets.dbt import WAREHOUSE_POOL
from engage_assets.assets.program.common import model_versions, program_tags, stage_key
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, each_partition
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
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
        ins={"offers": dg.AssetIn(stage_key(program, "offers"))},
        deps=[stage_key(program, "stored_candidates")],
        description="The stored candidates as Parquet per partition, registered as the warehouse table "
        "`exports.<program>` analysts can query.",
    )
    def warehouse_export(
        context: dg.AssetExecutionContext, offers: Any, exports: ExportResource
    ) -> dg.MaterializeResult:
        """Export each partition of the run, then (re)register the table over every exported partition."""

        def one(window: PartitionWindow, table: pa.Table) -> tuple[None, dict[str, Any]]:
            export = pipeline.export_table(program, table, window.partition_key, model_versions(table))
            return None, {
                "dagster/row_count": export.num_rows,
                "path": exports.write_partition(g, window.partition_key, export),
            }

        meta = each_partition(context, parts, offers, one)[1]
        return dg.MaterializeResult(metadata={**meta, "table": exports.register(g)})

    return warehouse_export
