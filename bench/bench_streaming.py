"""Peak memory of the stages after `eligible_candidates` (#14, item 3): scoring, offers, the store and the export of
one large churn-prevention partition, streamed in record batches (the stages as they run: `batch_rows` = 65,536)
beside the same partition in ONE batch (what the stages held before they streamed: the whole partition as a table,
its scored and offers tables, every candidate record at once), at two partition sizes.

Each configuration runs in a child process of its own (spawn; the partition is generated in another, so no process
inherits it), which reports its peak RSS (VmHWM) after each stage; the partition is synthetic but shaped like the program's eligible rows (the 29 columns of the local run's
`eligible_candidates`), its two models trained on a logistic process over their features.  Streaming, the peak
should not grow with the partition; in one batch it does.

`run(quick=False)` returns `streaming_peak_rss_mb` (the larger partition, streamed), `one_batch_peak_rss_mb`, and
per size and mode the peak per stage and the seconds.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.bench_churn import vm_hwm_mb

STREAM_ROWS = 65_536  # resources.batches.BATCH_ROWS
PROGRAM_ID = "churn-prevention"


def eligible(n: int, seed: int = 1) -> pa.Table:
    """Churn-prevention eligible rows: the columns `eligible_candidates` holds after the local run's filter chain."""
    rng = np.random.default_rng(seed)

    def ints(lo: int, hi: int, dtype: Any = np.int32) -> np.ndarray:
        return rng.integers(lo, hi, n).astype(dtype)

    def pick(values: list[str]) -> pa.Array:
        return pa.array(np.asarray(values, dtype=object)[rng.integers(0, len(values), n)], pa.string())

    return pa.table(
        {
            "customer_id": pa.array([f"CB{i:09d}" for i in range(n)], pa.string()),
            "engagement_score": rng.random(n),
            "engagement_change": rng.normal(-0.2, 0.1, n),
            "login_frequency": rng.random(n) * 20,
            "historical_avg": rng.random(n),
            "purchase_frequency": rng.random(n) * 5,
            "days_since_last_purchase": ints(0, 400),
            "support_tickets": ints(0, 9),
            "feature_usage": rng.random(n),
            "subscription_status": pick(["active", "paused"]),
            "lifetime_value_usd": rng.uniform(500, 9_000, n),
            "subscription_tenure_months": ints(1, 120),
            "marketplace": pick(["US", "UK", "DE"]),
            "time_zone": pick(["America/New_York", "Europe/London", "Europe/Berlin"]),
            "subscription_tier": pick(["basic", "premium", "enterprise"]),
            "account_status": pick(["active"]),
            "order_frequency": ints(0, 30),
            "monthly_revenue_usd": rng.uniform(20, 400, n),
            "satisfaction_history": rng.random(n),
            "complaint_history": ints(0, 5),
            "discount_sensitivity": rng.random(n),
            "marketing_opt_out": rng.random(n) < 0.05,
            "email_opt_in": rng.random(n) < 0.9,
            "sms_opt_in": rng.random(n) < 0.5,
            "push_opt_in": rng.random(n) < 0.5,
            "phone_opt_in": rng.random(n) < 0.3,
            "days_since_program_offer": ints(30, 400, np.int64),
            "program_offers_365d": ints(0, 3),
            "all_offers_91d": ints(0, 3),
        }
    )


def train(program: Any, root: Path) -> dict[str, Any]:
    """The program's models, trained on a logistic process over their features, saved in a registry under `root`."""
    from engage_assets.domain.models import ModelRef, ModelRegistry, train_model

    registry, refs = ModelRegistry(root), {}
    data = eligible(20_000, seed=2).to_pandas()
    for spec in program.scoringModels:
        z = sum((data[f] - data[f].mean()) / data[f].std() for f in spec.features)
        frame = data.assign(**{spec.label: np.random.default_rng(3).random(len(data)) < 1 / (1 + np.exp(-z))})
        trained = train_model(spec.modelId, program.programId, spec.features, frame, spec.label)
        path = registry.save(trained)
        refs[spec.modelId] = ModelRef(
            spec.modelId, program.programId, trained.version, spec.endpoint, tuple(spec.features), str(path)
        )
    return refs


def _peak_mb() -> float:
    """The process's own high-water mark since exec (VmHWM): `ru_maxrss` carries the forking parent's RSS across the
    spawn's exec (under `make bench`, after the other modules: every child 'started' at 1,373 MB)."""
    return vm_hwm_mb() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stages(work: str, batch_rows: int, out: Any) -> None:
    """Child process: the four stages over `work`/eligible.parquet with `batch_rows`; reports peaks and seconds."""
    from upath import UPath

    from engage_assets.assets.program.offers import offers_partition
    from engage_assets.assets.program.partitions import PartitionWindow
    from engage_assets.assets.program.scoring import score_partition
    from engage_assets.assets.program.store import store_partition
    from engage_assets.domain import pipeline
    from engage_assets.domain.config import load_programs
    from engage_assets.settings import PROJECT_ROOT
    from resources.batches import ParquetBatches, write_batches_to
    from resources.engagement.sqlite import SqliteEngagementStore
    from resources.exports.local import LocalParquetExports
    from resources.scoring.local import LocalScoringResource
    from resources.staging import RejectionLogResource
    from resources.store.sqlite import SqliteCandidateStore

    program = next(p for p in load_programs(PROJECT_ROOT / "program_configs") if p.programId == PROGRAM_ID)
    root = Path(work)
    run = root / f"run-{batch_rows}"
    run.mkdir()
    window = PartitionWindow("2026-11-09", date(2026, 11, 9), date(2026, 11, 10))
    refs = train(program, root / "models")
    store = SqliteCandidateStore(path=str(run / "store.sqlite"))
    figures: dict[str, Any] = {"start": _peak_mb()}
    seconds: dict[str, float] = {}

    def stage(name: str, step: Any) -> Any:
        t = time.perf_counter()
        value = step()
        seconds[name] = round(time.perf_counter() - t, 2)
        figures[name] = round(_peak_mb())
        return value

    def written(output: Any, name: str) -> Path:
        target = run / f"{name}.parquet"
        write_batches_to(output.batches, UPath(target))
        output.metadata(str(target))
        return target

    batches = ParquetBatches(UPath(root / "eligible.parquet"), batch_rows)
    scored = stage(
        "scored_candidates",
        lambda: written(score_partition(program, refs, LocalScoringResource(), store, batches), "scored"),
    )
    rejections = RejectionLogResource(base_path=str(run / "stages"))
    offers = stage(
        "offers",
        lambda: written(
            offers_partition(program, rejections, window, ParquetBatches(UPath(scored), batch_rows), []), "offers"
        ),
    )
    engagement = SqliteEngagementStore(path=str(run / "engagement.sqlite"))
    history = LocalParquetExports(root=str(run / "history"), warehouse_path=str(run / "w.duckdb"))
    meta = stage(
        "stored_candidates",
        lambda: store_partition(program, store, engagement, window, ParquetBatches(UPath(offers), batch_rows), history)[
            1
        ],
    )
    exports = LocalParquetExports(root=str(run / "exports"), warehouse_path=str(run / "w.duckdb"))

    def export() -> int:
        source = ParquetBatches(UPath(offers), batch_rows)
        tables = (pipeline.export_table(program, t, window.partition_key, {}) for t in source.tables())
        return exports.write_partition_batches(program.group, window.partition_key, tables)[1]

    stage("warehouse_export", export)
    out.put({"peak_mb": figures, "seconds": seconds, "stored": meta["written"], "rows": batches.num_rows})


def _write_eligible(work: str, n: int) -> None:
    pq.write_table(eligible(n), Path(work) / "eligible.parquet")


def _measure(work: str, batch_rows: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_stages, args=(work, batch_rows, queue))
    child.start()
    result = queue.get(timeout=3_600)
    child.join(timeout=60)
    return result


def _in_child(target: Any, *args: Any) -> None:
    """Run `target` in a process of its own (its peak is its own VmHWM), so the parent never holds a partition."""
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    child.start()
    child.join(timeout=3_600)
    if child.exitcode != 0:
        raise RuntimeError(f"{target.__name__} failed (exit {child.exitcode})")


def run(quick: bool = False) -> dict[str, dict[str, Any]]:
    sizes = (100_000, 200_000) if quick else (1_000_000, 2_000_000)
    by_size: dict[int, dict[str, Any]] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="engage-bench-streaming-") as work:
            _in_child(_write_eligible, work, n)
            by_size[n] = {
                "streaming": _measure(work, STREAM_ROWS),
                "one_batch": _measure(work, n),
            }
    big, small = sizes[-1], sizes[0]

    def peak(n: int, mode: str) -> int:
        return max(v for k, v in by_size[n][mode]["peak_mb"].items() if k != "start")

    note = (
        f"churn-prevention, {big:,} eligible rows (synthetic, the local run's 29 columns): scoring, offers, store "
        f"and export in a child process; VmHWM after each stage; streaming = batches of {STREAM_ROWS:,} rows"
    )
    detail = {f"{n:,}": by_size[n] for n in sizes}
    return {
        "streaming_peak_rss_mb": {
            "value": peak(big, "streaming"),
            "unit": "MB",
            "spec": "",
            "note": note,
            "at_smaller_partition_mb": peak(small, "streaming"),
            "growth_to_larger_pct": round(100 * (peak(big, "streaming") / peak(small, "streaming") - 1), 1),
            "detail": detail,
        },
        "one_batch_peak_rss_mb": {
            "value": peak(big, "one_batch"),
            "unit": "MB",
            "spec": "",
            "note": "the same partition in one batch: what the stages held before they streamed",
            "at_smaller_partition_mb": peak(small, "one_batch"),
            "growth_to_larger_pct": round(100 * (peak(big, "one_batch") / peak(small, "one_batch") - 1), 1),
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
