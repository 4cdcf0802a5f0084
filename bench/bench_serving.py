"""Serving API benchmark (issues 3 and 14): GetCandidatesByScore pages of 50 from a store of 1,000,000 candidates,
16 concurrent connections from a separate load process (wrk), while a store write of 250,000 candidates runs
(streamed in chunks through `partition_write`, as the store stage writes a partition), in a window that holds the
whole write.  The same load without the write is measured first, by the same server in the same run
(`serving_no_write_p99_ms`).  Each window is measured three times (once with --quick) and the run with the median
p99 is reported, every run's p99 and req/s beside it: on 2 shared cores the tail varies from run to run.

`run(quick=False)` returns {"serving_p99_ms", "serving_rps", "<route>_p50_ms", "<route>_p99_ms", ...} as
{"value", "unit", "spec"} dicts.  The server is what `make serve` runs (uvicorn, SERVE_WORKERS workers, uvloop,
httptools) over SQLite stores built once under ENGAGE_HOME/bench_serving (reused while their size and layout
match).  The same window with two workers is measured beside it (`serving_2_workers_*`): on 2 cores shared with the
load generator and the writer, a second worker adds throughput but lengthens the tail.  Without wrk on PATH a
Python load process stands in (slower: its figures are marked).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engage_assets.serving import ensure_demo_key
from engage_assets.serving.auth import create_api_key
from engage_assets.settings import Settings, get_settings
from resources.engagement.sqlite import SqliteEngagementStore
from resources.store.sqlite import SqliteCandidateStore

PROGRAM = "win-back-campaigns"
OFFERS = ("premium", "standard", "basic")
BATCH = 25_000  # the store's partitions as built
WRITE = 250_000  # the concurrent write: ten times the 25,000 the issue first measured
WRITE_CHUNK = 5_000  # records per chunk of the streamed write (the store stage's batch)
SERVE_WORKERS = 1  # the Makefile's SERVE_WORKERS default
NOW = int(time.time())


def _record(i: int, partition: str, program: str = PROGRAM) -> dict[str, Any]:
    """A candidate shaped like engage_assets.domain.pipeline.candidate_records writes it."""
    rng = random.Random(i)
    score = rng.random()
    offer = OFFERS[0] if score >= 0.7 else OFFERS[1] if score >= 0.4 else OFFERS[2]
    return {
        "customerId": f"C{i:08d}",
        "programId": program,
        "partitionKey": partition,
        "marketplace": "US",
        "subjectId": f"C{i:08d}",
        "segment": offer,
        "offerType": offer,
        "score": score,
        "scores": {"win-back-likelihood-v3": score},
        "modelVersions": {"win-back-likelihood-v3": "3f9a1c2b"},
        "offer": {
            "offerType": offer,
            "discount": 50 if offer == "premium" else 30,
            "durationMonths": 6,
            "valueUsd": round(rng.uniform(5, 80), 2),
        },
        "holdout": rng.random() < 0.1,
        "channels": ["email", "phone"],
        "context": {"days_since_last_purchase": rng.randint(90, 400), "lifetime_value": round(rng.uniform(50, 900), 2)},
        "createdAt": "2026-01-05T02:00:00+00:00",
        "expiresAt": NOW + 30 * 86_400,
    }


def _build_store(home: Path, n: int) -> None:
    # The store layout version is in the marker: v2 keeps holdout candidates out of the query indexes.
    marker = home / f"built-{n}-v2"
    if marker.exists():
        return
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    store = SqliteCandidateStore(path=str(home / "store.sqlite"))
    for p in range(n // BATCH):
        partition = f"2025-{1 + p // 28:02d}-{1 + p % 28:02d}"
        store.replace_partition(PROGRAM, partition, [_record(p * BATCH + i, partition) for i in range(BATCH)], now=NOW)
    churn = [_record(10**8 + i, "2026-01-05", "churn-prevention") for i in range(5000)]
    for r in churn:
        r["segment"] = "critical" if r["score"] >= 0.8 else "high" if r["score"] >= 0.6 else "medium"
    store.replace_partition("churn-prevention", "2026-01-05", churn, now=NOW)
    store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    engagement = SqliteEngagementStore(path=str(home / "engagement.sqlite"))
    for i in range(2000):
        engagement.create_call_task(
            {
                "taskId": f"task-{i}",
                "customerId": f"C{i:08d}",
                "programId": "churn-prevention",
                "segment": "critical",
                "scriptId": "retention-call-v2",
                "callType": "account-manager",
                "score": 0.9,
                "offer": {"discount": 50},
                "dueAt": NOW + (i % 48) * 3600,
                "priority": i % 3,
            }
        )
        engagement.upsert_inbox_message(
            {
                "messageId": f"msg-{i}",
                "customerId": f"C{i % 500:08d}",
                "programId": "churn-prevention",
                "messageType": "retention-offer",
                "templateId": "retention-in-app-v1",
                "offer": {"discount": 30},
                "score": 0.7,
                "displayFrom": NOW - 3600,
                "displayUntil": NOW + 7 * 86_400,
            }
        )
    marker.touch()


def _batch_writer(home: str, n: int, start_event: Any, done: Any, measured: Any, mode: str = "stream") -> None:
    """The concurrent batch: `n` candidates into a new partition (its own process, like a Dagster run), streamed as
    the store stage streams them: chunks of `WRITE_CHUNK` records through `partition_write`, then the commit.  The
    clean-up (emptying the partition again, then a checkpoint) waits until the measured window is over: it is a
    second large write that the issue's workload does not include.  `mode="replace"`: the former way, every record
    built first and one `replace_partition` (for comparison)."""
    store = SqliteCandidateStore(path=f"{home}/store.sqlite")
    partition = "2026-02-02"
    records = [_record(2 * 10**7 + i, partition) for i in range(n)] if mode == "replace" else []
    start_event.wait()
    time.sleep(1.0)  # into the measured window
    t = time.perf_counter()
    if mode == "replace":
        store.replace_partition(PROGRAM, partition, records)
    else:
        writer = store.partition_write(PROGRAM, partition)
        for first in range(0, n, WRITE_CHUNK):
            writer.add([_record(2 * 10**7 + i, partition) for i in range(first, min(n, first + WRITE_CHUNK))])
        writer.commit()
    done.put(time.perf_counter() - t)
    measured.wait(timeout=900)
    store.replace_partition(PROGRAM, partition, [])  # leave the store as built
    store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _during_write(home: Path, n: int, load: Any, mode: str = "stream") -> tuple[dict[str, float], float]:
    """One measured window: `load()` runs while a separate process writes an `n`-candidate batch; returns the
    load's figures and the write's seconds (the writer then removes the batch again, outside the window)."""
    ctx = multiprocessing.get_context("spawn")
    start, done, measured = ctx.Event(), ctx.Queue(), ctx.Event()
    writer = ctx.Process(target=_batch_writer, args=(str(home), n, start, done, measured, mode))
    writer.start()
    start.set()
    try:
        figures = load()
        write_s = done.get(timeout=900)
    finally:
        measured.set()
    writer.join(timeout=900)
    return figures, write_s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_health(base: str, timeout: float = 300) -> None:  # a loaded 2-core machine took over 60 s (30 Nov)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("serving API did not start")


_WRK_SCRIPT = """
local paths = {%s}
wrk.headers["X-API-Key"] = "%s"
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""


def _wrk(base: str, key: str, paths: list[str], seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT % (", ".join(f'"{p}"' for p in paths), key))
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", script, base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50": ms("50%"),
        "p99": ms("99%"),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def _python_load(base: str, key: str, paths: list[str], seconds: int) -> dict[str, float]:
    """Fallback load generator: a separate process, 16 keep-alive connections (threads)."""
    code = f"""
import http.client, random, threading, time, json, sys
paths = {paths!r}; lat = []; errors = [0]; stop = time.time() + {seconds}
def worker():
    c = http.client.HTTPConnection("127.0.0.1", {base.rsplit(":", 1)[1]})
    while time.time() < stop:
        t = time.perf_counter(); c.request("GET", random.choice(paths), headers={{"X-API-Key": "{key}"}})
        r = c.getresponse(); r.read(); lat.append(time.perf_counter() - t)
        errors[0] += r.status != 200
ts = [threading.Thread(target=worker) for _ in range(16)]
[t.start() for t in ts]; [t.join() for t in ts]
lat.sort(); print(json.dumps({{"p50": lat[len(lat)//2]*1000, "p99": lat[int(len(lat)*.99)]*1000,
                               "rps": len(lat)/{seconds}, "errors": errors[0]}}))
"""
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


@contextlib.contextmanager
def _server(home: Path, workers: int) -> Iterator[str]:
    """The API as `make serve` starts it, with `workers` uvicorn workers; yields its base URL once healthy."""
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "engage_assets.serving.server:app_from_settings",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "ENGAGE_HOME": str(home), "ENGAGE_ENV": "local"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_health(base)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def run(quick: bool = False) -> dict[str, dict[str, Any]]:
    n = 100_000 if quick else 1_000_000
    seconds = 4 if quick else 15
    home = get_settings().home / "bench_serving"
    _build_store(home, n)
    ensure_demo_key(Settings(env="local", home=home))
    key = create_api_key(
        SqliteEngagementStore(path=str(home / "engagement.sqlite")),
        ["read:*", "agent", "inapp"],
        "bench",
        rate_per_second=1e5,
        burst=100_000,
    )[1]
    load = _wrk if shutil.which("wrk") else _python_load
    by_score = [
        f"/v1/programs/{PROGRAM}/candidates/by-score?offerType={o}&minScore={s:.2f}&limit=50"
        for o, lo in (("premium", 0.7), ("standard", 0.4), ("basic", 0.0))
        for s in (lo, lo + 0.1, lo + 0.2)
    ]
    routes = {
        "by_score": by_score,
        "by_risk_level": [
            f"/v1/programs/churn-prevention/candidates/by-risk-level?riskLevel={r}&minScore={s}&limit=50"
            for r, s in (("critical", 0.8), ("high", 0.6), ("medium", 0.4))
        ],
        "by_impact": [f"/v1/programs/{PROGRAM}/candidates/by-impact?impactLevel=premium&refundType=premium&limit=50"],
        "customer": [f"/v1/customers/C{i:08d}/candidates" for i in range(0, n, max(1, n // 100))],
        "inbox": [f"/v1/customers/C{i:08d}/inbox" for i in range(0, 500, 5)],
        "call_tasks": ["/v1/programs/churn-prevention/call-tasks?limit=50"],
    }

    write_n = 25_000 if quick else WRITE
    window = {"s": 20 if quick else 60}  # grown when a write outlasts it: the window must hold the whole write

    def during(base: str) -> tuple[dict[str, float], float]:
        for _ in range(4):
            figures, write_s = _during_write(home, write_n, lambda: load(base, key, by_score, window["s"]))
            if write_s + 1.0 <= window["s"]:
                return figures, write_s
            window["s"] = int(write_s * 1.25) + 2  # the write ended after the load: measure again, longer
        raise RuntimeError(f"the {write_n:,}-candidate write never fitted in a {window['s']} s window")

    def windows(base: str) -> tuple[list[tuple[dict[str, float], float]], dict[str, float], float]:
        """The measured window, repeated (p99 on 2 shared cores varies run to run): every run, and the median one."""
        load(base, key, by_score, 2)  # warm-up: page cache, connections
        runs = [during(base) for _ in range(1 if quick else 3)]
        return (runs, *sorted(runs, key=lambda r: r[0]["p99"])[len(runs) // 2])

    def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
        return sorted(runs, key=lambda r: r["p99"])[len(runs) // 2]

    with _server(home, SERVE_WORKERS) as base:
        load(base, key, by_score, 2)  # warm-up
        quiet = [load(base, key, by_score, seconds) for _ in range(1 if quick else 3)]
        runs, main, write_s = windows(base)
        per_route = {name: load(base, key, paths, 2 if quick else 5) for name, paths in routes.items()}
    with _server(home, 2) as base:
        runs2, main2, _ = windows(base)
    base_run = median_run(quiet)
    tool = "wrk" if load is _wrk else "python load process"
    results: dict[str, dict[str, Any]] = {
        "serving_p99_ms": {
            "value": round(main["p99"], 2),
            "unit": "ms",
            "spec": "<= 10",
            "note": f"GetCandidatesByScore, 50/page, {n:,} candidates, 16 connections ({tool}), "
            f"during a {write_n:,}-candidate store write (streamed in chunks of {WRITE_CHUNK:,}, as the store stage "
            f"writes; {window['s']} s windows holding the whole write), {SERVE_WORKERS} uvicorn worker(s) "
            f"(make serve); median of {len(runs)} runs",
            "runs_p99_ms": [round(r[0]["p99"], 2) for r in runs],
            "runs_rps": [round(r[0]["rps"]) for r in runs],
            "runs_write_s": [round(r[1], 1) for r in runs],
            "no_write_p99_ms": round(base_run["p99"], 2),
            "ratio_to_no_write": round(main["p99"] / base_run["p99"], 2),
        },
        "serving_no_write_p99_ms": {
            "value": round(base_run["p99"], 2),
            "unit": "ms",
            "spec": "",
            "note": f"the baseline: the same load and server, no write, {seconds} s windows, same process; median of "
            f"{len(quiet)} runs",
            "runs_p99_ms": [round(r["p99"], 2) for r in quiet],
            "runs_rps": [round(r["rps"]) for r in quiet],
        },
        "serving_rps": {"value": round(main["rps"]), "unit": "req/s", "spec": ">= 2000"},
        "serving_p50_ms": {"value": round(main["p50"], 2), "unit": "ms", "spec": ""},
        "serving_errors": {"value": int(main["errors"] + main2["errors"]), "unit": "responses", "spec": "== 0"},
        "serving_batch_write_s": {
            "value": round(write_s, 2),
            "unit": "s",
            "spec": "",
            "note": f"the concurrent {write_n:,}-candidate streamed write (chunks staged, one swap), median run",
        },
        "serving_2_workers_p99_ms": {
            "value": round(main2["p99"], 2),
            "unit": "ms",
            "spec": "",
            "note": "the same window with 2 uvicorn workers; median run",
            "runs_p99_ms": [round(r[0]["p99"], 2) for r in runs2],
            "runs_rps": [round(r[0]["rps"]) for r in runs2],
        },
        "serving_2_workers_rps": {"value": round(main2["rps"]), "unit": "req/s", "spec": ""},
    }
    for name, r in per_route.items():
        results[f"serving_{name}_p50_ms"] = {"value": round(r["p50"], 2), "unit": "ms", "spec": ""}
        results[f"serving_{name}_p99_ms"] = {"value": round(r["p99"], 2), "unit": "ms", "spec": ""}
        results[f"serving_{name}_rps"] = {"value": round(r["rps"]), "unit": "req/s", "spec": ""}
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
