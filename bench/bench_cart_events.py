"""Sustained cart-event throughput: ingest → queue → drain → decide, in one process, duplicates included.

Figures (`run(quick=False)`, or `python -m bench.bench_cart_events [--quick] [--duration S]`, which prints them):
- `cart_events_per_s`: events decided per second of wall time over the run (the issue's bound: >= 10,000/s on
  this 2-core machine; the spec's: 5,000/s).  Each loop iteration: draw a slice of `SLICE` simulated events
  (`engage_assets.demo.cart_simulator.CartStream`, 10 % duplicates, the CLI's default mix otherwise), publish them
  through the ingest path (`QueueSink`: PutEvents-sized requests checked, envelopes, one `send`) into a fresh
  `LocalEventQueue`; drain the queue with the sensor's `drain_events` (receive up to 500 → parse → quarantine →
  durable batch files → delete) until it is empty; for each batch, read it back and parse it (`load_events`, as
  the `cart_decisions` asset does) and `decide` it, without Dagster.  The wall time is everything, the
  simulator's drawing included;
- `cart_events_per_cpu_s`: events decided per second of the process's CPU time (every thread): the same run's
  cost, less sensitive than the wall time to the machine's other load (the 1-minute load average before and after
  rides along with `cart_events_per_s`);
- `cart_events_{simulate,ingest,drain,load,decide}_share`: the split of that wall time;
- `cart_events_decide_batch_median_ms`: `decide`'s wall time per batch of up to 500 messages;
- `cart_events_rss_growth_mb_per_min`: the slope (least squares) of the process's RSS, sampled every
  `RSS_EVERY_S` seconds, after the first `WARMUP_S` seconds; the samples and the first/last minute's mean RSS ride
  along as extra fields.

Data: the warehouse of `bench_cart_decision` (scale 0.05, reused while its marker exists; `--quick`: 0.002), fresh
SQLite stores, queue and batch files under ENGAGE_BENCH_HOME/events.  The decision clock is the warehouse's
latest inventory time plus one day (as in `bench_cart_decision`); the simulated events start an hour before it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from bench.bench_cart_decision import BENCH_HOME, QUICK_SCALE, SCALE, _setup, build_warehouse

DURATION_S, QUICK_DURATION_S = 60.0, 10.0
SLICE = 2_000  # events published per loop iteration
MAX_MESSAGES = 500  # the sensor's batch
DUPLICATES = 0.10
STREAM_RATE = 100_000.0  # the simulated clock's events per second (the stamps only: nothing sleeps)
RSS_EVERY_S = 2.0
WARMUP_S = 10.0
PHASES = ("simulate", "ingest", "drain", "load", "decide")


def _slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute (0 with fewer than two)."""
    if len(samples) < 2:
        return 0.0
    ts, ms = [t for t, _ in samples], [m for _, m in samples]
    mt, mm = statistics.fmean(ts), statistics.fmean(ms)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else sum((t - mt) * (m - mm) for t, m in samples) / den * 60.0


def measure(home: Path, scale: float, duration_s: float) -> dict[str, Any]:
    """Run the loop for `duration_s` seconds (module docstring); the figures."""
    import psutil

    from engage_assets.assets.reactive.decisions import load_events
    from engage_assets.demo.cart_simulator import CartStream, Mix, load_shop
    from engage_assets.demo.event_publisher import QueueSink
    from engage_assets.reactive import decide
    from resources.event_batches import EventBatchStore
    from resources.events.local import LocalEventQueue
    from sensors.cart_events import drain_events

    warehouse = build_warehouse(home, scale)
    program, parts, _, now = _setup(home / "events", warehouse)
    state = home / "events" / "state"
    queue = LocalEventQueue(path=str(state / "events.sqlite"))
    batches = EventBatchStore(root=str(state / "event_batches"))
    shop = load_shop(warehouse, seed=11)
    stream = iter(CartStream(shop, Mix(duplicates=DUPLICATES), 11, now - timedelta(hours=1), STREAM_RATE))
    sink = QueueSink(queue)
    drain_now = now.timestamp()  # the partitions run up to the decision clock's hour, not the machine's

    proc = psutil.Process(os.getpid())
    spent = dict.fromkeys(PHASES, 0.0)
    published = duplicates = received = decided = quarantined = batch_count = 0
    candidates = touches = dup_decisions = 0
    decide_ms: list[float] = []
    rss: list[tuple[float, float]] = []
    load_before = os.getloadavg()[0]
    cpu_start = time.process_time()
    start = time.perf_counter()
    next_rss = start
    while (elapsed := time.perf_counter() - start) < duration_s:
        if time.perf_counter() >= next_rss:
            rss.append((elapsed, proc.memory_info().rss / 2**20))
            next_rss += RSS_EVERY_S
        t0 = time.perf_counter()
        drawn = list(islice(stream, SLICE))
        t1 = time.perf_counter()
        results = sink.publish([e.entry for e in drawn])
        t2 = time.perf_counter()
        spent["simulate"] += t1 - t0
        spent["ingest"] += t2 - t1
        published += sum("EventId" in r for r in results)
        duplicates += sum(e.duplicate for e in drawn)
        while True:
            t0 = time.perf_counter()
            drained = drain_events(program, queue, batches, MAX_MESSAGES, now=drain_now)
            spent["drain"] += time.perf_counter() - t0
            if not drained.received:
                break
            received += drained.received
            quarantined += sum(drained.quarantined.values())
            for b in drained.batches:
                t0 = time.perf_counter()
                events, unparsed, _ = load_events(batches, program.programId, b.partition, [b.batch_id])
                t1 = time.perf_counter()
                result = decide(program, events, parts, now)
                t2 = time.perf_counter()
                spent["load"] += t1 - t0
                spent["decide"] += t2 - t1
                decide_ms.append((t2 - t1) * 1000)
                quarantined += sum(unparsed.values())
                decided += len(events)
                batch_count += 1
                candidates += len(result.candidates)
                touches += result.touches_inserted
                dup_decisions += result.duplicates
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    rss.append((wall, proc.memory_info().rss / 2**20))
    steady = [(t, m) for t, m in rss if t >= min(WARMUP_S, wall / 2)]
    first = [m for t, m in rss if t <= 60.0]
    last = [m for t, m in rss if t >= wall - 60.0]
    return {
        "wall_s": wall,
        "events_per_s": decided / wall,
        "cpu_s": cpu,
        "events_per_cpu_s": decided / cpu,
        "load_avg_1m": (round(load_before, 2), round(os.getloadavg()[0], 2)),
        "published": published,
        "duplicates_published": duplicates,
        "received": received,
        "decided": decided,
        "quarantined": quarantined,
        "batches": batch_count,
        "duplicates_decided": dup_decisions,
        "candidates": candidates,
        "touches_inserted": touches,
        "spent_s": spent,
        "decide_batch_median_ms": statistics.median(decide_ms) if decide_ms else float("nan"),
        "decide_batch_p99_ms": sorted(decide_ms)[int(0.99 * (len(decide_ms) - 1))] if decide_ms else float("nan"),
        "rss_samples": [(round(t, 1), round(m, 1)) for t, m in rss],
        "rss_first_minute_mb": statistics.fmean(first),
        "rss_last_minute_mb": statistics.fmean(last),
        "rss_slope_mb_per_min": _slope_mb_per_min(steady),
        "rss_slope_all_mb_per_min": _slope_mb_per_min(rss),
        "scale": scale,
        "duration_s": duration_s,
    }


def run(quick: bool = False, duration_s: float | None = None) -> dict[str, dict]:
    """The figures (module docstring)."""
    scale = QUICK_SCALE if quick else SCALE
    m = measure(BENCH_HOME, scale, duration_s or (QUICK_DURATION_S if quick else DURATION_S))
    _print(m)
    extra = {
        "duration_s": round(m["wall_s"], 1),
        "scale": scale,
        "events_decided": m["decided"],
        "duplicates_published": m["duplicates_published"],
        "batches": m["batches"],
        "slice": SLICE,
        "max_messages": MAX_MESSAGES,
        "note": "one process: simulator → ingest (QueueSink) → LocalEventQueue → drain_events → batch files → "
        "load_events → decide; wall time includes the simulator's drawing",
    }
    shares = {
        f"cart_events_{p}_share": {"value": round(m["spent_s"][p] / m["wall_s"], 3), "unit": "of wall", "spec": ""}
        for p in PHASES
    }
    return {
        # The bound (the spec's: 5,000/s).
        "cart_events_per_s": {
            "value": round(m["events_per_s"]),
            "unit": "events/s",
            "spec": ">= 10000",
            **extra,
            "load_avg_1m_before_after": list(m["load_avg_1m"]),
        },
        # Events decided per second of the process's CPU time (every thread): the pipeline's cost, less sensitive
        # than the wall time to the other processes sharing the machine's two cores (one process uses one core).
        "cart_events_per_cpu_s": {"value": round(m["events_per_cpu_s"]), "unit": "events/CPU-s", "spec": ""},
        **shares,
        "cart_events_decide_batch_median_ms": {
            "value": round(m["decide_batch_median_ms"], 1),
            "unit": "ms",
            "spec": "",
            "p99_ms": round(m["decide_batch_p99_ms"], 1),
        },
        "cart_events_rss_growth_mb_per_min": {
            "value": round(m["rss_slope_mb_per_min"], 2),
            "unit": "MB/min",
            "spec": "",
            "after_warmup_s": WARMUP_S,
            "slope_all_samples_mb_per_min": round(m["rss_slope_all_mb_per_min"], 2),
            "first_minute_mean_mb": round(m["rss_first_minute_mb"], 1),
            "last_minute_mean_mb": round(m["rss_last_minute_mb"], 1),
            "samples_s_mb": m["rss_samples"],
        },
    }


def _print(m: dict[str, Any]) -> None:
    wall = m["wall_s"]
    split = ", ".join(f"{p} {m['spent_s'][p]:.1f} s ({m['spent_s'][p] / wall:.0%})" for p in PHASES)
    print(
        f"cart events, {wall:.1f} s, scale {m['scale']:g}: {m['decided']:,} events decided "
        f"({m['events_per_s']:,.0f}/s, {m['events_per_cpu_s']:,.0f} per CPU-second, load "
        f"{m['load_avg_1m'][0]}-{m['load_avg_1m'][1]}; published {m['published']:,}, {m['duplicates_published']:,} duplicates; "
        f"{m['batches']:,} batches; quarantined {m['quarantined']:,}; duplicates at decide "
        f"{m['duplicates_decided']:,}; candidates {m['candidates']:,}; touches {m['touches_inserted']:,})\n"
        f"  time: {split}\n"
        f"  decide per batch: median {m['decide_batch_median_ms']:.1f} ms, p99 {m['decide_batch_p99_ms']:.1f} ms\n"
        f"  RSS: first minute {m['rss_first_minute_mb']:.1f} MB, last minute {m['rss_last_minute_mb']:.1f} MB, "
        f"slope {m['rss_slope_mb_per_min']:.2f} MB/min after {WARMUP_S:g} s "
        f"({m['rss_slope_all_mb_per_min']:.2f} over all samples)",
        flush=True,
    )


def main() -> None:
    """`python -m bench.bench_cart_events [--quick] [--duration S] [--scale X]`: print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=float, default=None, help=f"seconds (default {DURATION_S:g})")
    parser.add_argument("--scale", type=float, default=None)
    args = parser.parse_args()
    scale = args.scale or (QUICK_SCALE if args.quick else SCALE)
    _print(measure(BENCH_HOME, scale, args.duration or (QUICK_DURATION_S if args.quick else DURATION_S)))


if __name__ == "__main__":
    main()
