"""Abandoned-cart decision latency: `engage_assets.reactive.decide` on ONE event, the embedded default's parts.

Figures (`run(quick=False)`, or `python -m bench.bench_cart_decision [--quick] [--runs N]`, which prints them):
- `cart_decide_one_event_median_ms`, `cart_decide_one_event_p99_ms`: wall time of `decide(program, [event], parts,
  now)` for a new cart (a fresh dedup key every run, so every step runs: claim, the warehouse queries, the ledger's
  recovery count, filters, scoring, discount, holdout, the candidate write, the touch plan and its ledger write,
  the claim completed), `RUNS` runs after `WARMUP` unmeasured ones.  The spec's bounds: 305 ms average (target
  < 500 ms), p99 480 ms (target < 1000 ms);
- `cart_decision_cpu_median_ms`, `cart_decision_cpu_p99_ms`: the process's CPU time (every thread, DuckDB's
  included) per decision: its cost, less sensitive than the wall time to the machine's other load (the 1-minute
  load average before and after rides along with the figures);
- `cart_decide_duplicate_median_ms`: the same event delivered again (the claim finds the key: nothing else runs);
- `cart_context_median_ms`: the enrichment reads alone (`context.gather`: three warehouse queries, the cart state,
  the ledger), the share of the decision spent reading.
These run inside one `warehouse.session()` (a consumer deciding events one after another, or a warm Lambda
container, keeps the warehouse connection open); `cart_decision_cold_*` and `cart_context_cold_median_ms` repeat
them with the DuckDB file opened for every event (10-20 ms of each decision).

Data: `engage_assets.demo.datagen.generate(scale=SCALE)` built by the project's dbt assets (scale 0.05: ~90,000
customers, ~125,000 carts; `--quick`: 0.002), the purchase-intent model trained on it, fresh SQLite stores (store,
ledger, dedup/cart state) under ENGAGE_BENCH_HOME (default /tmp/engage-bench-cart), the warehouse reused while its
marker file exists.  The events' customers are active, opted-in customers with a payment method (they pass every
filter, so the write path is measured).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_HOME = Path(os.environ.get("ENGAGE_BENCH_HOME", "/tmp/engage-bench-cart"))
SCALE, QUICK_SCALE = 0.05, 0.002
RUNS, WARMUP = 200, 10


def build_warehouse(home: Path, scale: float) -> Path:
    """The generated warehouse at `scale`, built by dbt through Dagster (reused while its marker exists)."""
    import dagster as dg

    from engage_assets.assets.dbt import build_dbt_assets
    from engage_assets.demo.datagen import generate
    from resources.dbt import dbt_resource

    path = home / f"warehouse-{scale:g}.duckdb"
    marker = path.with_suffix(".built")
    if marker.exists():
        return path
    home.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    generate(path, scale=scale)
    os.environ["ENGAGE_WAREHOUSE_PATH"] = str(path)
    os.environ["DBT_TARGET_PATH"] = str(home / "dbt_target")
    result = dg.materialize([build_dbt_assets()], resources={"dbt": dbt_resource("local")}, raise_on_error=False)
    if not result.success:
        raise RuntimeError("dbt build of the bench warehouse failed")
    marker.touch()
    return path


def _event(customer: str, cart: str, at: datetime) -> Any:
    from engage_assets.domain.events import parse_event

    detail = {
        "customerId": customer,
        "cartId": cart,
        "cartValue": 150.0,
        "currency": "USD",
        "itemCount": 3,
        "items": [{"id": f"P0000{i}", "name": "item", "price": 50.0, "inStock": True} for i in range(3)],
        "abandonmentReason": "session_timeout",
        "timestamp": at.isoformat(),
    }
    raw = {
        "version": "0",
        "id": f"ev-{cart}",
        "detail-type": "CartAbandoned",
        "source": "ecommerce.cart",
        "account": "123456789012",
        "time": at.isoformat(),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }
    return parse_event(raw)


def _setup(home: Path, warehouse: Path) -> tuple[Any, Any, list[str], datetime]:
    """(program, parts, good customers, clock) on fresh stores."""
    import duckdb

    from engage_assets.domain.config import load_program
    from engage_assets.domain.models import ModelRegistry
    from engage_assets.reactive import DecisionParts, train_purchase_intent
    from resources.cart_state.sqlite import SqliteCartState
    from resources.dedup.sqlite import SqliteDedupStore
    from resources.delivery_ledger.sqlite import DeliveryLedger
    from resources.scoring.local import LocalScoringResource
    from resources.store.sqlite import SqliteCandidateStore
    from resources.warehouse.duckdb import DuckDBWarehouse

    program = load_program(ROOT / "tests" / "fixtures" / "abandoned-cart-recovery.yaml")
    state = home / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    wh = DuckDBWarehouse(path=str(warehouse))
    _, model = train_purchase_intent(program, wh, ModelRegistry(state / "models"))  # type: ignore[arg-type]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        customers = [
            r[0]
            for r in con.execute(
                "SELECT c.customer_id FROM marts.customers c JOIN intermediate.int_customer_purchase_features f"
                " USING (customer_id) WHERE c.account_status = 'active' AND NOT c.marketing_opt_out"
                " AND f.payment_method_on_file ORDER BY c.customer_id LIMIT 500"
            ).fetchall()
        ]
        latest = con.execute("SELECT max(updated_at) FROM staging.stg_inventory").fetchone()[0]
    parts = DecisionParts(
        warehouse=wh,
        scoring=LocalScoringResource(),
        model=model,
        store=SqliteCandidateStore(path=str(state / "store.sqlite")),
        ledger=DeliveryLedger(state / "delivery.sqlite"),
        dedup=SqliteDedupStore(path=str(state / "reactive.sqlite")),
        cart_state=SqliteCartState(path=str(state / "reactive.sqlite")),
    )
    return program, parts, customers, latest.replace(tzinfo=UTC) + timedelta(days=1)


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1000, p99 * 1000


def _decide_new_events(program: Any, parts: Any, customers: list[str], now: datetime, runs: int, tag: str) -> dict:
    """Seconds per `decide` of a new event, of its duplicate delivery, and of the context reads alone."""
    from engage_assets.reactive import decide
    from engage_assets.reactive.context import gather
    from engage_assets.reactive.events import split_events

    new, cpu, dup, reads = [], [], [], []
    for i in range(WARMUP + runs):
        event = _event(customers[i % len(customers)], f"bench-cart-{tag}-{i}", now - timedelta(minutes=30))
        c0, t0 = time.process_time(), time.perf_counter()
        result = decide(program, [event], parts, now)
        t1, c1 = time.perf_counter(), time.process_time()
        decide(program, [event], parts, now)
        t2 = time.perf_counter()
        batch = split_events(program, [event])
        gather(parts.warehouse, parts.cart_state, parts.ledger, program, batch.abandoned, batch.items, now)
        t3 = time.perf_counter()
        if i >= WARMUP:
            assert result.claimed == 1
            new.append(t1 - t0)
            cpu.append(c1 - c0)
            dup.append(t2 - t1)
            reads.append(t3 - t2)
    return {"new": new, "cpu": cpu, "dup": dup, "reads": reads}


def measure(home: Path, scale: float, runs: int) -> dict[str, Any]:
    """Time `decide` on one new event `runs` times (after a warm-up), a duplicate, and the context reads: on a warm
    warehouse session (a consumer deciding events one after another, or a warm Lambda container: the file opened
    once) and cold (the file opened for every event, `runs // 4` runs)."""
    program, parts, customers, now = _setup(home, build_warehouse(home, scale))
    load_before = os.getloadavg()[0]
    with parts.warehouse.session():
        warm = _decide_new_events(program, parts, customers, now, runs, "warm")
    cold = _decide_new_events(program, parts, customers, now, max(10, runs // 4), "cold")
    median, p99 = _ms(warm["new"])
    cpu_median, cpu_p99 = _ms(warm["cpu"])
    return {
        "median_ms": median,
        "p99_ms": p99,
        "cpu_median_ms": cpu_median,
        "cpu_p99_ms": cpu_p99,
        "load_avg_1m": (round(load_before, 2), round(os.getloadavg()[0], 2)),
        "mean_ms": statistics.mean(warm["new"]) * 1000,
        "duplicate_median_ms": _ms(warm["dup"])[0],
        "context_median_ms": _ms(warm["reads"])[0],
        "cold_median_ms": _ms(cold["new"])[0],
        "cold_p99_ms": _ms(cold["new"])[1],
        "cold_context_median_ms": _ms(cold["reads"])[0],
        "runs": runs,
        "scale": scale,
    }


def run(quick: bool = False) -> dict[str, dict]:
    """The figures (module docstring)."""
    m = measure(BENCH_HOME, QUICK_SCALE if quick else SCALE, 50 if quick else RUNS)
    extra = {"runs": m["runs"], "scale": m["scale"], "load_avg_1m_before_after": list(m["load_avg_1m"])}
    return {
        # The bound is 20 ms at p99 (the spec's own figures: 305 ms average, 480 ms p99).
        "cart_decision_median_ms": {"value": round(m["median_ms"], 1), "unit": "ms", "spec": "", **extra},
        "cart_decision_p99_ms": {"value": round(m["p99_ms"], 1), "unit": "ms", "spec": "<= 20", **extra},
        # CPU time of the process (every thread) per decision: what the decision costs, less sensitive than the wall
        # time to the other processes sharing the machine's two cores.
        "cart_decision_cpu_median_ms": {"value": round(m["cpu_median_ms"], 1), "unit": "ms", "spec": ""},
        "cart_decision_cpu_p99_ms": {"value": round(m["cpu_p99_ms"], 1), "unit": "ms", "spec": ""},
        "cart_decide_duplicate_median_ms": {"value": round(m["duplicate_median_ms"], 1), "unit": "ms", "spec": ""},
        "cart_context_median_ms": {"value": round(m["context_median_ms"], 1), "unit": "ms", "spec": ""},
        "cart_decision_cold_median_ms": {"value": round(m["cold_median_ms"], 1), "unit": "ms", "spec": ""},
        "cart_decision_cold_p99_ms": {"value": round(m["cold_p99_ms"], 1), "unit": "ms", "spec": ""},
        "cart_context_cold_median_ms": {"value": round(m["cold_context_median_ms"], 1), "unit": "ms", "spec": ""},
    }


def main() -> None:
    """Print the figures: `python -m bench.bench_cart_decision [--quick] [--runs N] [--scale S]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--scale", type=float, default=None)
    args = parser.parse_args()
    scale = args.scale or (QUICK_SCALE if args.quick else SCALE)
    m = measure(BENCH_HOME, scale, args.runs or (50 if args.quick else RUNS))
    print(
        f"decide(one new event), {m['runs']} runs, scale {m['scale']:g}: median {m['median_ms']:.1f} ms, "
        f"p99 {m['p99_ms']:.1f} ms, mean {m['mean_ms']:.1f} ms (CPU median {m['cpu_median_ms']:.1f} ms, p99 "
        f"{m['cpu_p99_ms']:.1f} ms; load {m['load_avg_1m'][0]}-{m['load_avg_1m'][1]}); duplicate delivery median "
        f"{m['duplicate_median_ms']:.1f} ms; context reads alone median {m['context_median_ms']:.1f} ms (warm "
        f"warehouse session); cold (file opened per event): median {m['cold_median_ms']:.1f} ms, p99 "
        f"{m['cold_p99_ms']:.1f} ms, context reads {m['cold_context_median_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
