"""A single-run backfill over a partition range, on the stage machinery itself (`stream_partitions`,
`each_partition`, the Parquet IO manager): each partition records its own metadata, and the range is processed one
partition at a time (Arrow's allocation never holds more than about one partition's table).

The end-to-end version, on a generated warehouse and the real program stages, is in `tests/test_e2e.py`."""

# No `from __future__ import annotations`: Dagster reads the context annotations at definition time.

from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.assets.program.partitions import SINGLE_RUN, each_partition, stream_partitions
from resources.staging import ArrowParquetIOManager

PARTS = dg.DailyPartitionsDefinition(start_date="2026-01-01")
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"]
ROWS = 2_000_000  # 16 MB of int64 per partition
PART_BYTES = ROWS * 8


def _rows(partition_key: str) -> int:
    return ROWS + int(partition_key[-1])  # every partition has its own count


def _assets(allocated: dict[str, list[int]]) -> list[Any]:
    @dg.asset(partitions_def=PARTS, backfill_policy=SINGLE_RUN)
    def upstream(context: dg.AssetExecutionContext) -> Any:
        def one(window, _):
            allocated["upstream"].append(pa.total_allocated_bytes())
            n = _rows(window.partition_key)
            column = pc.multiply(pa.array(np.arange(n)), 1)  # in Arrow's pool, which the test measures
            return pa.table({"x": column}), {"dagster/row_count": n, "own": window.partition_key}

        return stream_partitions(context, PARTS, None, one)

    @dg.asset(partitions_def=PARTS, backfill_policy=SINGLE_RUN)
    def downstream(context: dg.AssetExecutionContext, upstream: Any) -> dg.MaterializeResult:
        def one(window, table):
            allocated["downstream"].append(pa.total_allocated_bytes())
            return None, {"dagster/row_count": table.num_rows, "own": window.partition_key}

        each_partition(context, PARTS, upstream, one)
        return dg.MaterializeResult()

    return [upstream, downstream]


def test_a_ranged_run_records_each_partition_and_holds_one_at_a_time(tmp_path):
    allocated: dict[str, list[int]] = {"upstream": [], "downstream": []}
    instance = dg.DagsterInstance.ephemeral()
    base = pa.total_allocated_bytes()
    result = dg.materialize(
        _assets(allocated),
        instance=instance,
        resources={"io_manager": ArrowParquetIOManager(base_path=str(tmp_path / "stages"))},
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
    )
    assert result.success
    for key in ("upstream", "downstream"):
        records = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
        meta = {
            r.asset_materialization.partition: {k: v.value for k, v in r.asset_materialization.metadata.items()}
            for r in records
        }
        assert sorted(meta) == DAYS
        for day in DAYS:
            assert meta[day]["dagster/row_count"] == _rows(day)  # its own, never the range's sum
            assert meta[day]["own"] == day
        assert all("partitions" not in m and "rows_per_partition" not in m for m in meta.values())
    # Each partition is computed (and its input read) with at most the one before it still being released: a range
    # that kept every partition would hold 5 x 16 MB by the last one.
    assert len(allocated["upstream"]) == len(allocated["downstream"]) == len(DAYS)
    for stage, seen in allocated.items():
        assert max(seen) - base < 2.5 * PART_BYTES, (stage, [(s - base) // 2**20 for s in seen])
