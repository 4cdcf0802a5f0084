"""Delivery throughput and crash reliability (issue 4).

- `delivery_msgs_per_s`: ledger plan + render + pressure/claim + send + record of 100,000 touches (half e-mail over
  real SMTP to the capture server, run as its own processes with `--workers 2`; half SMS to the outbox), in one
  process with 4 SMTP connections.  Peak RSS is sampled during the run to show memory stays flat (the engine pages
  through the ledger 500 touches at a time).  Spec: >= 2,000 messages/s.  The touch plan is synthetic (the
  planner's `plan_touches` output shape); rendering uses a plain-string stand-in of the template renderer.
- `delivery_crash_trials_exactly_once` (not with --quick): 20 trials × 10,000 touches, each SIGKILLed at one of
  the crash points (before the claim, after the claim, after the provider call, mid-batch) and re-run; value = trials
  where the capture server's files and the outbox's rows are exactly the planned set.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil


def _throughput(n: int) -> dict[str, Any]:
    from engage_assets.demo.reliability import NOW, PROGRAM, count_received, engine_for, trial_plan
    from engage_assets.demo.smtp_capture import free_port, spawn_capture
    from resources.delivery_ledger.sqlite import DeliveryLedger

    root = Path(tempfile.mkdtemp(prefix="bench_delivery_"))
    port = free_port()
    server = spawn_capture(root / "mail", port, workers=2)
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            peak[0] = max(peak[0], proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        rss_start = proc.memory_info().rss
        sampler.start()
        t0 = time.perf_counter()
        plan = trial_plan(n)
        ledger = DeliveryLedger(root / "delivery.sqlite")
        ledger.plan(plan, PROGRAM, "trial", NOW)
        del plan
        t_plan = time.perf_counter() - t0
        stats = engine_for(root, port, lease_s=600).run([PROGRAM], NOW)
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join()
        received = count_received(root, n)
    finally:
        stop.set()
        server.terminate()
        server.wait()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "n": n,
        "seconds": elapsed,
        "plan_seconds": t_plan,
        "sent": stats.total("sent"),
        "rss_start_mb": rss_start / 2**20,
        "rss_peak_mb": peak[0] / 2**20,
        "received": received,
    }


def _crash_trials(trials: int, n: int) -> dict[str, Any]:
    from engage_assets.delivery.engine import CRASH_POINTS
    from engage_assets.demo.reliability import run_trial
    from engage_assets.demo.smtp_capture import free_port, spawn_capture

    results = []
    for i in range(trials):
        root = Path(tempfile.mkdtemp(prefix="bench_crash_"))
        port = free_port()
        server = spawn_capture(root / "mail", port, workers=2)
        try:
            results.append(run_trial(root, port, n, CRASH_POINTS[i % len(CRASH_POINTS)], seed=i))
        finally:
            server.terminate()
            server.wait()
            shutil.rmtree(root, ignore_errors=True)
    return {"ok": sum(1 for r in results if r["killed"] and r["exactly_once"]), "trials": results}


def run(quick: bool = False) -> dict[str, dict[str, Any]]:
    n = 10_000 if quick else 100_000
    t = _throughput(n)
    out: dict[str, dict[str, Any]] = {
        "delivery_msgs_per_s": {
            "value": round(t["sent"] / t["seconds"], 1),
            "unit": "msg/s",
            "spec": ">= 2000",
            "touches": n,
            "sent": t["sent"],
            "seconds": round(t["seconds"], 2),
            "plan_seconds": round(t["plan_seconds"], 2),
            "exactly_once_at_receivers": t["received"]["exactly_once"],
            "rss_start_mb": round(t["rss_start_mb"], 1),
            "rss_peak_mb": round(t["rss_peak_mb"], 1),
            "note": "SMTP to aiosmtpd capture (2 processes, 4 connections) + SQLite outbox; synthetic plan/render",
        },
    }
    if not quick:
        c = _crash_trials(20, 10_000)
        out["delivery_crash_trials_exactly_once"] = {
            "value": c["ok"],
            "unit": "trials",
            "spec": "== 20",
            "touches_per_trial": 10_000,
            "points": sorted({r["point"] for r in c["trials"]}),
            "seconds": round(sum(r["seconds"] for r in c["trials"]), 1),
            "failures": [r for r in c["trials"] if not (r["killed"] and r["exactly_once"])][:3],
        }
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
