"""`[group, "eligible_candidates"]`: the config's filter chain, run by the warehouse over the source stage's rows;
only the rows that pass reach the run, every rejected row stays in the warehouse with its filter and reason."""

import os
import tempfile
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from engage_assets.assets.program.common import program_pool, program_tags, stage_key
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, stream_batches
from engage_assets.assets.program.source import partition_params
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.pushdown import PARTITION_COLUMN, ChainPlan
from resources.batches import BATCH_ROWS, BatchOutput, ParquetBatches, write_batches
from resources.staging import RejectionLogResource
from resources.warehouse.base import StageTarget, WarehouseResource, warehouse_key


def eligible_batches(
    program: ProgramConfig, warehouse: WarehouseResource, stage_root: str, window: PartitionWindow
) -> BatchOutput:
    """One partition's rows that pass every filter, with the funnel (rows left after each filter) as metadata: the
    warehouse writes the rejected rows (replacing a previous run's) and counts them; the eligible rows stream back a
    record batch at a time (`WarehouseResource.query_batches`) as the IO manager writes them, so the run never holds
    the partition's eligible rows at once (the 50M bench's 2.3M rows: ~500 MB)."""
    params = partition_params(program, window)
    source = StageTarget(stage_root, program.group, "source_candidates", window.partition_key)
    relation = warehouse.rows_relation(source)
    with warehouse.session():  # one connection for the partition's statements
        probe = warehouse.query_arrow(f"SELECT * FROM {relation} AS r LIMIT 0", params)
        columns = [c for c in probe.column_names if c != PARTITION_COLUMN]
        plan = ChainPlan(program, relation, columns, warehouse.dialect)
        # The look-backs once (the costly join), for the rows that reach the first filter reading them.
        lookbacks = StageTarget(stage_root, program.group, "lookbacks", window.partition_key)
        warehouse.write_rows(plan.lookbacks_sql(), params, lookbacks)
        plan = ChainPlan(program, relation, columns, warehouse.dialect, warehouse.rows_relation(lookbacks))
        target = StageTarget(stage_root, program.group, "rejections", window.partition_key, "eligible_candidates")
        path = warehouse.write_rows(plan.rejections_sql(), params, target)
        removed = plan.removed(warehouse.query_arrow(plan.removed_sql(warehouse.rows_relation(target)), params))

    def metadata(written: str) -> dict[str, Any]:
        eligible = ParquetBatches(written).num_rows
        n = eligible + sum(removed.values())
        stages = [("source", n)]
        for fid, count in removed.items():
            n -= count
            stages.append((fid, n))
        return {
            "dagster/row_count": eligible,
            **{f"removed/{fid}": v for fid, v in removed.items()},
            "funnel": dg.MetadataValue.md(pipeline.funnel_markdown(stages)),
            "rejections_path": path,
        }

    batches = warehouse.query_batches(plan.eligible_sql(), params, BATCH_ROWS)
    return BatchOutput((pa.Table.from_batches([b]) for b in batches), metadata)


def eligible_partition(
    program: ProgramConfig, warehouse: WarehouseResource, stage_root: str, window: PartitionWindow
) -> tuple[pa.Table, dict[str, Any]]:
    """`eligible_batches` as one table and its metadata (a caller that wants the partition whole: tests, tools)."""
    output = eligible_batches(program, warehouse, stage_root, window)
    with tempfile.TemporaryDirectory(prefix="engage-eligible-") as tmp:
        where = os.path.join(tmp, "eligible.parquet")
        write_batches(output.batches, where)
        return pq.read_table(where), output.metadata(where)


def eligible_asset(program: ProgramConfig, parts: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """The program's `eligible_candidates` asset, reading `source_candidates` in the warehouse."""
    engine = warehouse_key(program.connector.type)

    @dg.asset(
        key=stage_key(program, "eligible_candidates"),
        group_name=program.group,
        partitions_def=parts,
        tags=program_tags(program),
        kinds={"duckdb" if program.connector.type != "snowflake" else "snowflake", "pyarrow"},
        pool=program_pool(program),
        backfill_policy=SINGLE_RUN,
        deps=[stage_key(program, "source_candidates")],
        required_resource_keys={engine, "rejections"},
        description="The config's filter chain in order, compiled to one SQL pass that the warehouse runs over the "
        "partition's `source_candidates`: only the eligible rows leave it (this asset's table, one per partition); "
        "every rejected row is written by the warehouse with the filter and reason that removed it "
        "(`rejections_path`), and each filter's count is `removed/<filter>`.",
    )
    def eligible_candidates(context: dg.AssetExecutionContext) -> Any:
        """The eligible rows of each partition of the run."""
        warehouse: WarehouseResource = getattr(context.resources, engine)
        rejections: RejectionLogResource = context.resources.rejections

        def one(window: PartitionWindow, _: Any) -> BatchOutput:
            return eligible_batches(program, warehouse, rejections.base_path, window)

        return stream_batches(context, parts, None, one)

    return eligible_candidates
