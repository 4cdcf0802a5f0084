"""`engage run`'s cart burst: the reactive programs' event path, end to end, in a few seconds.

For each reactive program: the cart simulator (`engage_assets.demo.cart_simulator`) publishes a burst of events into
the environment's event queue through the ingest path; the cart-event sensor's drain (`sensors.cart_events`) turns
them into durable hourly batches, as a tick would; `<group>_decide` runs in process for each batch, with the run
config the sensor's run request carries.  The funnel summed over the runs is printed like a batch program's; the
touches planned go out with `engage run`'s day of deliveries.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from engage_assets.assets.reactive import decide_job_name
from engage_assets.domain.config import ReactiveProgram
from engage_assets.settings import Settings
from resources.event_batches import EventBatchStore
from resources.events.base import EventSource
from sensors.cart_events import drain_events, run_requests

BURST = 2_000
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def publish_burst(settings: Settings, queue: EventSource, count: int = BURST, seed: int = 7) -> int:
    """Publish `count` simulated cart events (their clock from 10 minutes ago) at once; how many were accepted."""
    from engage_assets.demo.cart_simulator import CartStream, Mix, load_shop
    from engage_assets.demo.event_publisher import Plan, QueueSink, simulate

    shop = load_shop(settings.warehouse_path, seed)
    start = datetime.now(UTC) - timedelta(minutes=10)
    stream = CartStream(shop, Mix(0.1, 0.02, 0.05, 20), seed, start, rate=10.0)
    tally = simulate(stream, QueueSink(queue), Plan(rate=10.0, total=count), sleep=lambda s: None)
    return tally.published


def decide_burst(
    defs: dg.Definitions, instance: dg.DagsterInstance, program: ReactiveProgram, resources: Mapping[str, Any]
) -> tuple[Counter[str], int, int]:
    """Drain the queue into batches and run `<group>_decide` for each; (metadata counts summed, runs, failures)."""
    job = defs.resolve_job_def(decide_job_name(program))
    queue: EventSource = resources["events"]
    store: EventBatchStore = resources["event_batches"]
    totals: Counter[str] = Counter()
    runs = failed = 0
    while (drained := drain_events(program, queue, store)).received:
        totals["quarantined_at_sensor"] += sum(drained.quarantined.values())
        for request in run_requests(program, drained):
            config = {**QUIET, **(request.run_config or {})}
            res = job.execute_in_process(
                instance=instance, partition_key=request.partition_key, run_config=config, raise_on_error=False
            )
            runs += 1
            if not res.success:
                failed += 1
                continue
            for mat in res.asset_materializations_for_node(f"{program.group}__cart_decisions"):
                for k, v in mat.metadata.items():
                    value = getattr(v, "value", None)
                    if isinstance(value, int) and not isinstance(value, bool):
                        totals[k] += value
    return totals, runs, failed


def print_funnel(name: str, totals: Counter[str], runs: int, seconds: float) -> None:
    """The burst's funnel, summed over its runs, like a batch program's."""
    print(f"\n== {name}  ({runs} decision runs, {seconds:.1f} s)")
    print(f"   events received        {totals['stage/received']:>10,}   quarantined at the sensor: "
          f"{totals['quarantined_at_sensor']:,}")  # fmt: skip
    print(f"   cart abandonments      {totals['stage/abandoned']:>10,}   duplicates: {totals['duplicates']:,}")
    if totals["stage/abandoned"] and totals["duplicates"] == totals["stage/abandoned"]:
        # The burst's seed is fixed: a second `engage run` publishes the same carts, already decided once.
        print("   (every cart was decided by an earlier run: exactly once per cart, for the dedup TTL)")
    n = totals["stage/known_customer"]
    print(f"   known customers        {n:>10,}   purchases recorded: {totals['purchases_recorded']:,}")
    for key, removed in ((k, v) for k, v in totals.items() if k.startswith("removed/")):  # chain order
        print(f"   removed by {key[8:]:<12}{removed:>10,}")
    print(f"   eligible               {totals['stage/eligible']:>10,}   holdout: {totals['holdout']:,}")
    print(f"   candidates stored      {totals['stage/stored']:>10,}")
    touches = "  ".join(f"{k[8:]}={v:,}" for k, v in sorted(totals.items()) if k.startswith("touches/"))
    print(f"   touches planned        {totals['stage/touches']:>10,}   {touches}")


def run_cart_burst(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    programs: list[ReactiveProgram],
    count: int = BURST,
) -> bool:
    """The burst for every reactive program (module docstring); whether every decision run succeeded."""
    resources = defs.resources or {}
    ok = True
    for i, program in enumerate(programs):
        t0 = time.perf_counter()
        published = publish_burst(settings, resources["events"], count, seed=7 + i)
        print(f"\nCart burst: {published:,} simulated cart events published to the local queue ...")
        totals, runs, failed = decide_burst(defs, instance, program, resources)
        print_funnel(program.programName, totals, runs, time.perf_counter() - t0)
        if failed:
            print(f"   {failed} decision runs FAILED")
            ok = False
    return ok
