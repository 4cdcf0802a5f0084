"""A program's time partitions, and running a stage once per partition of a run (one, or a backfill's range)."""

import warnings
from collections.abc import Callable
from typing import Any

import dagster as dg

from engage_assets.assets.program.common import counts_md
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.sources import PartitionWindow

__all__ = ["SINGLE_RUN", "PartitionWindow", "each_partition", "partitions_for", "windows_of"]

# Backfills of a date range run as one run (the UI's default for these assets, and what
# `dagster asset materialize --partition-range` needs); every partition is still processed on its own.
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


def each_partition(
    context: dg.AssetExecutionContext,
    parts: dg.TimeWindowPartitionsDefinition,
    upstream: Any,
    one: PartitionFn,
) -> tuple[Any, dict[str, Any]]:
    """Run `one(window, upstream) -> (value, metadata)` for every partition of the run.

    One partition: its value and metadata as they are. A range: a `{partition_key: value}` dict (the IO manager
    writes one file per partition, and loads a range as such a dict) and metadata summed over the partitions, with
    the per-partition row counts as a table.  Each partition is processed on its own, exactly as a one-partition
    run would, so a range run and N single runs leave the same results.
    """
    windows = windows_of(context, parts)
    if len(windows) == 1:
        w = windows[0]
        return one(w, upstream[w.partition_key] if isinstance(upstream, dict) else upstream)
    values: dict[str, Any] = {}
    rows: dict[str, int] = {}
    for w in windows:
        values[w.partition_key], meta = one(w, upstream[w.partition_key] if isinstance(upstream, dict) else upstream)
        rows[w.partition_key] = int(meta.get("dagster/row_count", 0))
    return values, {
        "partitions": len(windows),
        "dagster/row_count": sum(rows.values()),
        "rows_per_partition": dg.MetadataValue.md(counts_md(rows, "partition")),
    }
