"""`[group, "eligible_candidates"]`: the config's filter chain, every rejected row kept with its reason."""

from typing import Any

import dagster as dg
import pyarrow as pa

from engage_assets.assets.program.common import program_pool, program_tags, stage_key
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, stream_partitions
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from resources.staging import RejectionLogResource


def eligible_partition(
    program: ProgramConfig, rejections: RejectionLogResource, window: PartitionWindow, source: pa.Table
) -> tuple[pa.Table, dict[str, Any]]:
    """One partition's rows that pass every filter, with the funnel (rows left after each filter) as metadata."""
    result = pipeline.apply_filter_chain(program, source)
    path = rejections.write(program.group, "eligible_candidates", window.partition_key, result.rejected)
    stages = [("source", source.num_rows)]
    n = source.num_rows
    for fid, removed in result.removed.items():
        n -= removed
        stages.append((fid, n))
    return result.table, {
        "dagster/row_count": result.table.num_rows,
        **{f"removed/{fid}": v for fid, v in result.removed.items()},
        "funnel": dg.MetadataValue.md(pipeline.funnel_markdown(stages)),
        "rejections_path": path,
    }


def eligible_asset(program: ProgramConfig, parts: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """The program's `eligible_candidates` asset, reading `source_candidates`."""

    @dg.asset(
        key=stage_key(program, "eligible_candidates"),
        group_name=program.group,
        partitions_def=parts,
        tags=program_tags(program),
        kinds={"duckdb"},
        pool=program_pool(program),
        backfill_policy=SINGLE_RUN,
        ins={"source": dg.AssetIn(stage_key(program, "source_candidates"))},
        description="The config's filter chain in order, in one vectorised pass; every rejected row is kept "
        "with the filter and reason that removed it.",
    )
    def eligible_candidates(context: dg.AssetExecutionContext, source: Any, rejections: RejectionLogResource) -> Any:
        """The eligible rows of each partition of the run."""

        def one(window: PartitionWindow, table: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
            return eligible_partition(program, rejections, window, table)

        return stream_partitions(context, parts, source, one)

    return eligible_candidates
