"""Cart sensor latency: a CartAbandoned event posted to the serving API → its candidate readable from the serving API,
through the real sensor path, with the Dagster UI and daemon running.

Figures (`run(quick=False)`, or `python -m bench.bench_cart_sensor [--quick] [--events N]`, which prints them):
- `cart_sensor_p95_s`, `cart_sensor_p50_s`: EVENTS events (`--quick`: QUICK_EVENTS), one at a time, a random 2-6 s
  pause between them (so the posts fall at random points of the daemon's loops): `POST /v1/events` one CartAbandoned
  event, then `GET /v1/customers/{id}/candidates` every POLL_S s until the candidate of that cart (`subjectId`) is
  served; the latency is post sent → candidate served.  p95 interpolated linearly between the order statistics (20
  events: between the 19th and the 20th).  The issue's bound: p95 <= 15 s.  A warm-up event first, not counted;
- `cart_sensor_<phase>_median_s` (p95 as an extra field): the split, from the Dagster instance (the tick that
  requested the run, the run's event log); the phases add up to the latency:
  - `wait`: post → the sensor tick that drains it starts.  The cart-event sensor (`sensors/cart_events.py`) has
    `minimum_interval_seconds=5`, and the daemon's sensor loop starts at most every 5 s (Dagster's
    MIN_INTERVAL_LOOP_TIME), evaluating the deployment's sensors (the cart events, a due-touch sensor per program,
    run-failure alerts) one after another through the code server: 0 to ~10 s;
  - `tick`: tick start → RUN_ENQUEUED: the evaluation on the code server (receive, parse, batch file, ack), then the
    run created and queued (dagster.yaml's `concurrency.runs` makes it the QueuedRunCoordinator's);
  - `queue`: RUN_ENQUEUED → RUN_STARTING: the run-queue daemon looks every 5 s (`dequeue_interval_seconds`' default);
  - `launch`: RUN_STARTING → RUN_START: a new process (the code server starts it) imports the code location: the
    event path's own, `engage_events` (`engage_assets.reactive_location`: Dagster, the decision path, its resources;
    no dagster-dbt, sklearn or boto3), ~1.5 s of imports on a quiet machine where the main location takes ~3.5 s;
  - `setup`: RUN_START → STEP_START: the run's resources initialised;
  - `decide`: STEP_START → served: the decision (warehouse reads, filters, score, store and ledger writes) and up to
    POLL_S of polling.
  So the bound is Dagster's loops and the process launch, not the decision (ms in `bench_cart_decision`).

The processes are the real ones, started by the bench and stopped at the end (also on error, with their process
groups): `dagster dev -w workspace.yaml` (webserver, daemon, code server) on a fresh DAGSTER_HOME holding the
project's dagster.yaml (as `make setup` copies it), and the API as `make serve` starts it (uvicorn, one worker), each
on a free port.  They run a snapshot of the repository's HEAD (`git archive`, PYTHONPATH): a run process imports the
code anew, so concurrent edits of the working tree would otherwise break runs mid-bench.  State lives under
ENGAGE_BENCH_SENSOR_HOME (default /tmp/engage-bench-sensor), recreated every run: ENGAGE_HOME with a copy of
`bench_cart_decision`'s warehouse (scale 0.05, `--quick` 0.002; built there once), the purchase-intent model trained
and promoted, fresh stores, an `ingest` + `read:` API key; the children's logs in `logs/`.  The customers pass the
filter chain (active, opted in, a payment method on file) and are not in the holdout (a held-out candidate is never
served).  On 2 shared cores the figures are noisy: medians and p95 over the events.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

# Imported now, not after the minutes of measuring: the working tree may be mid-edit by then.
from engage_assets.assets.reactive import decide_job_name
from resources.event_batches import EventBatchStore

ROOT = Path(__file__).resolve().parent.parent
BENCH_HOME = Path(os.environ.get("ENGAGE_BENCH_SENSOR_HOME", "/tmp/engage-bench-sensor"))
EVENTS, QUICK_EVENTS = 20, 5
PAUSE_S = (2.0, 6.0)  # between one event served and the next posted
POLL_S = 0.1
TIMEOUT_S, WARMUP_TIMEOUT_S = 120.0, 300.0
PHASES = ("wait", "tick", "queue", "launch", "setup", "decide")
POINTS = ("post", "tick", "queued", "launched", "run_start", "step_start", "served")
CUSTOMERS_SQL = """SELECT CAST(customer_id AS VARCHAR) FROM marts.cart_customer_context WHERE account_status = 'active'
AND NOT marketing_opt_out AND payment_method_on_file ORDER BY customer_id LIMIT ?"""


@dataclass(frozen=True)
class Setup:
    """The bench's state: ENGAGE_HOME, the warehouse copy, DAGSTER_HOME, the program, its customers, the API key."""

    home: Path
    warehouse: Path
    dagster_home: Path
    src: Path
    program: Any
    customers: list[str]
    key: str

    def env(self) -> dict[str, str]:
        """The children's environment: the bench's state instead of the user's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGAGE_", "DAGSTER_", "DBT_"))}
        return env | {
            "ENGAGE_ENV": "local",
            "ENGAGE_HOME": str(self.home),
            "ENGAGE_WAREHOUSE_PATH": str(self.warehouse),
            "DAGSTER_HOME": str(self.dagster_home),
            "PYTHONPATH": str(self.src),
        }


def good_customers(warehouse: Path, program: Any, n: int) -> list[str]:
    """`n` customers that pass the program's filter chain and are not in its holdout."""
    import duckdb

    from engage_assets.domain.holdout import holdout_mask

    with duckdb.connect(str(warehouse), read_only=True) as con:
        ids = [r[0] for r in con.execute(CUSTOMERS_SQL, [4 * n + 100]).fetchall()]
    held = holdout_mask(ids, program.programId, program.holdout.percent, program.holdout.salt)
    return [c for c, h in zip(ids, held, strict=True) if not h][:n]


def prepare(home: Path, scale: float, n: int) -> Setup:
    """Fresh state under `home` (module docstring): code snapshot, warehouse copy, promoted model, key, dagster.yaml."""
    from bench.bench_cart_decision import BENCH_HOME as CART_HOME
    from bench.bench_cart_decision import build_warehouse
    from engage_assets.domain.config import ReactiveProgram, load_programs
    from engage_assets.domain.models import ModelRegistry
    from engage_assets.reactive import train_purchase_intent
    from engage_assets.serving.auth import create_api_key
    from engage_assets.settings import Settings
    from resources.engagement.sqlite import SqliteEngagementStore
    from resources.warehouse.duckdb import DuckDBWarehouse

    source = build_warehouse(CART_HOME, scale)
    shutil.rmtree(home, ignore_errors=True)
    src = snapshot(home / "src")
    settings = Settings(home=home / "engage")
    settings.home.mkdir(parents=True)
    (home / "logs").mkdir()
    (home / "dagster_home").mkdir()
    shutil.copyfile(src / "dagster.yaml", home / "dagster_home" / "dagster.yaml")  # what `make setup` does
    warehouse = settings.home / "warehouse.duckdb"
    shutil.copyfile(source, warehouse)
    program = next(p for p in load_programs(src / "program_configs") if isinstance(p, ReactiveProgram))
    train_purchase_intent(program, DuckDBWarehouse(path=str(warehouse)), ModelRegistry(settings.model_root))
    store = SqliteEngagementStore(path=str(settings.engagement_path))
    _, key = create_api_key(store, ["ingest", f"read:{program.programId}"], "bench-cart-sensor", rate_per_second=1000)
    customers = good_customers(warehouse, program, n)
    return Setup(settings.home, warehouse, home / "dagster_home", src, program, customers, key)


def snapshot(dest: Path) -> Path:
    """The repository's HEAD (`git archive`) at `dest`, the working tree's dbt manifest beside it: what the children
    run, so that edits of the working tree during the run cannot break a run process (each imports the code anew)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    manifest = ROOT / "dbt_project" / "target" / "manifest.json"
    if manifest.exists():
        (dest / "dbt_project" / "target").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest, dest / "dbt_project" / "target" / "manifest.json")
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Until `url` answers 200 (the process must stay up meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    """Stop a child started in its own session and everything of its process group: SIGINT (Ctrl-C: `dagster dev`
    shuts its webserver, daemon and code server down), SIGTERM, then SIGKILL for whatever is left."""
    for sig, grace in ((signal.SIGINT, 30.0), (signal.SIGTERM, 10.0)):
        if proc.poll() is None:
            proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group is the child's own (start_new_session): its children only
    proc.wait()


SERVE = (  # the Makefile's SERVE, one worker, the port appended
    "uvicorn engage_assets.serving.server:app_from_settings --factory --host 127.0.0.1 --loop uvloop --http httptools"
    " --no-access-log --timeout-graceful-shutdown 10 --workers 1"
).split()


@contextlib.contextmanager
def services(setup: Setup, logs: Path) -> Iterator[str]:
    """`dagster dev` and the serving API running on the bench's state; yields the API's base URL."""
    bin_dir = Path(sys.executable).parent
    web_port, api_port = free_port(), free_port()
    commands = {
        "serve": [str(bin_dir / SERVE[0]), *SERVE[1:], "--port", str(api_port)],
        "dagster_dev": [str(bin_dir / "dagster"), *"dev -w workspace.yaml -h 127.0.0.1 -p".split(), str(web_port)],
    }
    # What `make setup` runs before `make dev`: the manifest parsed unless it is current.
    subprocess.run(
        [sys.executable, "-m", "resources.dbt"], cwd=setup.src, env=setup.env(), check=True, stdout=subprocess.DEVNULL
    )
    with contextlib.ExitStack() as stack:
        procs = {}
        for name, cmd in commands.items():
            log = stack.enter_context((logs / f"{name}.log").open("wb"))
            procs[name] = subprocess.Popen(
                cmd, cwd=setup.src, env=setup.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            stack.callback(stop, procs[name])
        wait_http(f"http://127.0.0.1:{api_port}/health", procs["serve"], 120)
        wait_http(f"http://127.0.0.1:{web_port}/server_info", procs["dagster_dev"], 300)
        yield f"http://127.0.0.1:{api_port}"


def call(url: str, key: str, body: dict | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as r:
        return json.loads(r.read())


def post_cart(api: str, key: str, customer: str, cart: str) -> float:
    """POST one CartAbandoned event (PutEvents shape); the wall time it was sent."""
    now = datetime.now(UTC)
    items = [{"id": f"P0000{i}", "name": "item", "price": 50.0, "inStock": True} for i in range(3)]
    detail = {"customerId": customer, "cartId": cart, "cartValue": 150.0, "currency": "USD", "itemCount": 3}
    detail |= {"items": items, "abandonmentReason": "session_timeout", "timestamp": now.isoformat()}
    entry = {"Source": "ecommerce.cart", "DetailType": "CartAbandoned", "Detail": json.dumps(detail)}
    sent = time.time()
    answer = call(f"{api}/v1/events", key, {"Entries": [entry]})
    if answer["FailedEntryCount"]:
        raise RuntimeError(f"event refused: {answer['Entries']}")
    return sent


def wait_served(api: str, key: str, customer: str, cart: str, timeout: float) -> float | None:
    """The wall time the customer's candidate for `cart` is first served, or None after `timeout` seconds."""
    url = f"{api}/v1/customers/{urllib.parse.quote(customer)}/candidates"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.get("subjectId") == cart for c in call(url, key)["items"]):
            return time.time()
        time.sleep(POLL_S)
    return None


def run_timeline(instance: Any, setup: Setup, cart: str, since: float) -> dict[str, float]:
    """The Dagster side of one event (wall times): its tick's start, RUN_ENQUEUED, RUN_STARTING, RUN_START and
    STEP_START of the run whose batch holds the cart; {} when no run does."""
    program = setup.program
    batches = EventBatchStore(root=str(setup.home / "event_batches"))
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=decide_job_name(program), created_after=datetime.fromtimestamp(since - 5, UTC))
    )
    for record in records:
        tags = record.dagster_run.tags
        lines = batches.read(program.programId, tags["dagster/partition"], tags["engage/event_batch"])
        if any(f'"{cart}"' in line.body for line in lines):
            break
    else:
        return {}
    run_id = record.dagster_run.run_id
    types = {"queued": "RUN_ENQUEUED", "launched": "RUN_STARTING", "run_start": "RUN_START", "step_start": "STEP_START"}
    out: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        kind = entry.dagster_event_type.name if entry.dagster_event_type else None
        for point, name in types.items():
            if kind == name and point not in out:
                out[point] = entry.timestamp
    sensor = f"{program.group}_cart_events"
    for state in instance.all_instigator_state():
        if state.name == sensor:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since - 30)
            out |= next(({"tick": t.timestamp} for t in ticks if run_id in t.run_ids), {})
    return out


def one_event(api: str, setup: Setup, customer: str, cart: str, timeout: float) -> dict[str, float]:
    """Post, wait until served: {"post": t, "served": t} (no "served" after a timeout)."""
    posted = post_cart(api, setup.key, customer, cart)
    served = wait_served(api, setup.key, customer, cart, timeout)
    return {"post": posted} | ({} if served is None else {"served": served})


def measure(home: Path, scale: float, events: int, seed: int = 7) -> dict[str, Any]:
    """Warm up, then time `events` events one at a time; add each one's Dagster timeline (module docstring)."""
    setup = prepare(home, scale, events + 1)
    rng = random.Random(seed)
    tag = datetime.now(UTC).strftime("%H%M%S")
    carts = [f"bench-sensor-{tag}-{i}" for i in range(len(setup.customers))]
    samples: list[dict[str, float]] = []
    with services(setup, home / "logs") as api:
        warm = one_event(api, setup, setup.customers[0], carts[0], WARMUP_TIMEOUT_S)
        if "served" not in warm:
            raise RuntimeError(f"the warm-up event was not served in {WARMUP_TIMEOUT_S:.0f} s; logs: {home / 'logs'}")
        for i in range(1, len(setup.customers)):
            time.sleep(rng.uniform(*PAUSE_S))
            samples.append(one_event(api, setup, setup.customers[i], carts[i], TIMEOUT_S))
            print(f"   event {i}/{len(setup.customers) - 1}: {latency(samples[-1]):.2f} s", flush=True)
        (home / "samples.json").write_text(json.dumps(samples))
        instance = dg.DagsterInstance.from_config(str(setup.dagster_home))
        for cart, s in zip(carts[1:], samples, strict=True):
            s |= run_timeline(instance, setup, cart, s["post"])
    return summarize(samples, scale)


def latency(sample: dict[str, float]) -> float:
    """Post → served; TIMEOUT_S for an event never served."""
    return sample.get("served", sample["post"] + TIMEOUT_S) - sample["post"]


def quantiles(values: list[float]) -> tuple[float, float]:
    """(median, p95: linear interpolation between the order statistics)."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    return statistics.median(values), statistics.quantiles(values, n=100, method="inclusive")[94]


def summarize(samples: list[dict[str, float]], scale: float) -> dict[str, Any]:
    """Latencies (a timed-out event counts as TIMEOUT_S) and the split of the events whose timeline is complete."""
    latencies = [latency(s) for s in samples]
    complete = [s for s in samples if all(p in s for p in POINTS)]
    split = {
        phase: quantiles([s[b] - s[a] for s in complete])
        for phase, a, b in zip(PHASES, POINTS[:-1], POINTS[1:], strict=True)
    }
    p50, p95 = quantiles(latencies)
    return {
        "p50_s": p50,
        "p95_s": p95,
        "max_s": max(latencies),
        "latencies_s": [round(x, 2) for x in latencies],
        "timeouts": sum("served" not in s for s in samples),
        "split": split,
        "split_events": len(complete),
        "events": len(samples),
        "scale": scale,
    }


def run(quick: bool = False, events: int | None = None) -> dict[str, dict]:
    """The figures (module docstring)."""
    from bench.bench_cart_decision import QUICK_SCALE, SCALE

    m = measure(BENCH_HOME, QUICK_SCALE if quick else SCALE, events or (QUICK_EVENTS if quick else EVENTS))
    extra = {"events": m["events"], "timeouts": m["timeouts"], "scale": m["scale"]}
    metrics: dict[str, dict] = {
        "cart_sensor_p95_s": {
            "value": round(m["p95_s"], 2),
            "unit": "s",
            "spec": "<= 15",
            **extra,
            "max_s": round(m["max_s"], 2),
            "latencies_s": m["latencies_s"],
            "note": "event posted to POST /v1/events -> candidate served by GET /v1/customers/{id}/candidates, "
            "with `dagster dev` (webserver, daemon, code server) and the serving API running; one event at a time",
        },
        "cart_sensor_p50_s": {"value": round(m["p50_s"], 2), "unit": "s", "spec": "", **extra},
    }
    for phase, (median, p95) in m["split"].items():
        split = {"p95": round(p95, 2), "events": m["split_events"]}
        metrics[f"cart_sensor_{phase}_median_s"] = {"value": round(median, 2), "unit": "s", "spec": "", **split}
    return metrics


def main() -> None:
    """Print the figures: `python -m bench.bench_cart_sensor [--quick] [--events N]`."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=None)
    args = parser.parse_args()
    metrics = run(args.quick, args.events)
    head = metrics["cart_sensor_p95_s"]
    print(
        f"event posted -> candidate served, {head['events']} events ({head['timeouts']} timed out): "
        f"p50 {metrics['cart_sensor_p50_s']['value']:.2f} s, p95 {head['value']:.2f} s, max {head['max_s']:.2f} s"
    )
    print(f"   latencies (s): {head['latencies_s']}")
    for phase in PHASES:
        m = metrics.get(f"cart_sensor_{phase}_median_s")
        if m:
            print(f"   {phase:<7} median {m['value']:6.2f} s   p95 {m['p95']:6.2f} s   ({m['events']} events)")


if __name__ == "__main__":
    main()
