"""A program's time partitions, and running a stage once per partition of a run (one, or a backfill's range).

Backfills of a date range run as one run (`BackfillPolicy.single_run`: the UI's default for these assets, and what
`dagster asset materialize --partition-range` needs), and stay truthful and bounded:

- every partition records its own metadata on its own materialization (`context.add_asset_metadata(...,
  partition_key=...)`): its row count, its per-filter counts and funnel, as a one-partition run would;
- the partitions are processed one after another, one in memory at a time: the input of a range is read a
  partition at a time (`resources.staging.LazyPartitions`), and a stage's output is a `PartitionStream` that the IO
  manager computes and writes partition by partition;
- the stages after `eligible_candidates` hold less than a partition: they read their input a record batch at a
  time (`resources.batches.ParquetBatches`) and return a `BatchOutput` per partition (`stream_batches`), written
  batch by batch, whose metadata is computed once the partition's file is complete.

A multi-run backfill (one partition per run) gets exactly the same results and metadata.
"""

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.sources import PartitionWindow
from resources.batches import BatchOutput
from resources.staging import PartitionStream

__all__ = [
    "SINGLE_RUN",
    "PartitionWindow",
    "each_partition",
    "partitions_for",
    "stream_batches",
    "stream_partitions",
    "windows_of",
]

SINGLE_RUN = dg.BackfillPolicy.single_run()
# `backfill_policy` is marked beta on @asset; it is the documented way to get single-run backfills.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

PartitionFn = Callable[[PartitionWindow, Any], tuple[Any, dict[str, Any]]]


def partitions_for(program: ProgramConfig) -> dg.TimeWindowPartitionsDefinition:
    """The program's partitions: one per tick of its `batchSchedule` cron, from `partitionsStart`, in UTC."""
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=program.cron, start=program.partitionsStart.isoformat(), fmt="%Y-%m-%d", timezone="UTC"
    )


def windows_of(context: dg.AssetExecutionContext, parts: dg.TimeWindowPartitionsDefinition) -> list[PartitionWindow]:
    """The partitions a run covers: one (a scheduled run, a multi-run backfill) or a range (a single-run backfill
    from the UI, or `dagster asset materialize --partition-range`)."""
    out = []
    for pk in context.partition_keys:
        tw = parts.time_window_for_partition_key(pk)
        out.append(PartitionWindow(pk, tw.start.date(), tw.end.date()))
    return out


def _one_partition(context: dg.AssetExecutionContext, upstream: Any, one: PartitionFn) -> Callable[..., Any]:
    """`run(window)`: the partition's input (a range's is read now), `one`, and the partition's own metadata."""

    def run(window: PartitionWindow) -> Any:
        value, meta = one(window, upstream[window.partition_key] if isinstance(upstream, Mapping) else upstream)
        context.add_asset_metadata(meta, partition_key=window.partition_key)
        context.log.info(f"partition {window.partition_key}: {meta.get('dagster/row_count', 0):,} rows")
        return value

    return run


def each_partition(
    context: dg.AssetExecutionContext,
    parts: dg.TimeWindowPartitionsDefinition,
    upstream: Any,
    one: PartitionFn,
) -> dict[str, Any]:
    """Run `one(window, upstream) -> (value, metadata)` for every partition of the run, one after another; each
    partition's metadata goes on its own materialization.  Returns {partition_key: value}: for stages whose work
    is a side effect (the store, the export), whose values are small."""
    run = _one_partition(context, upstream, one)
    return {w.partition_key: run(w) for w in windows_of(context, parts)}


def stream_partitions(
    context: dg.AssetExecutionContext,
    parts: dg.TimeWindowPartitionsDefinition,
    upstream: Any,
    one: PartitionFn,
) -> Any:
    """The output of a stage that returns a table per partition: one partition's table, computed now; for a range, a
    `PartitionStream` the IO manager computes, writes and releases one partition after another (each partition's
    metadata, and where its file went, on its own materialization)."""
    windows = windows_of(context, parts)
    run = _one_partition(context, upstream, one)
    if len(windows) == 1:
        return run(windows[0])
    by_key = {w.partition_key: w for w in windows}

    def written(partition_key: str, path: str) -> None:
        context.add_asset_metadata({"stage_path": path}, partition_key=partition_key)

    return PartitionStream(list(by_key), lambda pk: run(by_key[pk]), written)


BatchFn = Callable[[PartitionWindow, Any], BatchOutput]


def stream_batches(
    context: dg.AssetExecutionContext,
    parts: dg.TimeWindowPartitionsDefinition,
    upstream: Any,
    one: BatchFn,
) -> PartitionStream:
    """The output of a stage that streams each partition in record batches: `one(window, upstream partition)` gives
    the partition's `BatchOutput`; the IO manager writes its batches, then the partition's metadata (computed from
    the complete file) goes on the partition's own materialization.  One partition or a range alike."""
    windows = windows_of(context, parts)
    by_key = {w.partition_key: w for w in windows}
    pending: dict[str, BatchOutput] = {}

    def compute(partition_key: str) -> BatchOutput:
        window = by_key[partition_key]
        pending[partition_key] = one(window, upstream[partition_key] if isinstance(upstream, Mapping) else upstream)
        return pending[partition_key]

    def written(partition_key: str, path: str) -> None:
        meta = pending.pop(partition_key).metadata(path)
        if len(windows) > 1:  # a one-partition run's file is named by the IO manager's own output metadata
            meta = {**meta, "stage_path": path}
        context.add_asset_metadata(meta, partition_key=partition_key)
        context.log.info(f"partition {partition_key}: {meta.get('dagster/row_count', 0):,} rows")

    return PartitionStream(list(by_key), compute, written)
