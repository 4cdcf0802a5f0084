"""Crash trials for the delivery engine: SIGKILL the delivery process at a crash point, re-run, count what arrived.

Used by `tests/test_delivery_crash.py` (small N) and `bench/bench_delivery.py` (20 trials × 10,000 touches).  A
trial plans `n` touches (half e-mail to the SMTP capture server, half SMS to the outbox), runs the engine in a child
process with `--crash-at <point>:<k>` (it must die by SIGKILL), runs it again to completion, and counts at the
receiving ends — .eml files and outbox rows — not only in the ledger.

    python -m engage_assets.demo.reliability deliver --root DIR --port N [--lease 0]   (the child process)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from engage_assets.delivery.engine import CRASH_POINTS
from resources.delivery_ledger.base import PLAN_COLUMNS, idempotency_key
from resources.delivery_ledger.sqlite import DeliveryLedger

PROGRAM = "reliability-trial"
NOW = 1_786_363_200  # 2026-08-10 12:00 UTC


@dataclass
class SyntheticRendered:
    subject: str | None
    text: str
    html: str | None


class SyntheticCustomers:
    """Every customer exists, is opted in and has a valid address; nothing converts (a stand-in for CustomerState)."""

    def contacts(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        return {
            c: {
                "customer_name": f"Customer {c}",
                "email": f"{c}@example.com",
                "phone": "+1555" + str(abs(hash(c)) % 10_000_000).rjust(7, "0"),
                "time_zone": "UTC",
                "email_opt_in": True,
                "sms_opt_in": True,
                "push_opt_in": True,
                "phone_opt_in": True,
                "marketing_opt_out": False,
            }
            for c in customer_ids
        }

    def recheck(self, touch: dict[str, Any], now: Any) -> str | None:
        return None


class SyntheticRenderer:
    def render(self, touch: dict[str, Any], contact: dict[str, Any]) -> SyntheticRendered:
        name = contact["customer_name"]
        if touch["channel"] == "email":
            return SyntheticRendered(
                f"We want you back, {name}",
                f"Hi {name},\n50% off for 6 months.\n",
                f"<p>Hi {name},</p><p>50% off for 6 months.</p>",
            )
        return SyntheticRendered(None, f"Hi {name}! Come back and save 50%.", None)


class CrashAt:
    """Checkpoint hook for the engine: SIGKILL this process at the n-th pass of `<point>:<n>`."""

    def __init__(self, spec: str | None):
        self.point, self.at, self.seen = None, 0, 0
        if spec:
            point, _, n = spec.partition(":")
            if point not in CRASH_POINTS:
                raise ValueError(f"crash point must be one of {CRASH_POINTS}")
            self.point, self.at = point, int(n or 1)

    def __call__(self, point: str) -> None:
        if point == self.point:
            self.seen += 1
            if self.seen >= self.at:
                os.kill(os.getpid(), signal.SIGKILL)


def trial_plan(n: int, program: str = PROGRAM, partition: str = "trial") -> pa.Table:
    """n touches: even ones e-mail, odd ones SMS, one per customer, all due at NOW."""
    cust = [f"c{i:07d}" for i in range(n)]
    chan = ["email" if i % 2 == 0 else "sms" for i in range(n)]
    cols: dict[str, Any] = {
        "touchKey": [f"{program}#{c}#s{c}#t1#{ch}" for c, ch in zip(cust, chan, strict=False)],
        "programId": [program] * n,
        "partitionKey": [partition] * n,
        "customerId": cust,
        "subjectId": [f"s{c}" for c in cust],
        "touchId": ["t1"] * n,
        "channel": chan,
        "channelId": chan,
        "templateId": ["trial-v1"] * n,
        "dueAt": [NOW - 60] * n,
        "expiresAt": [NOW + 86_400 * 30] * n,
        "conditions": ["[]"] * n,
        "segment": ["high"] * n,
        "offerType": ["premium"] * n,
        "offer": ['{"discount": 50}'] * n,
        "holdout": [False] * n,
        "marketplace": ["US"] * n,
        "timeZone": ["UTC"] * n,
        "currency": ["USD"] * n,
        "score": [0.9] * n,
    }
    return pa.table({c: cols[c] for c in PLAN_COLUMNS})


def engine_for(root: Path, port: int, lease_s: int, smtp_connections: int = 4, page_size: int = 500) -> Any:
    from datetime import time as dtime

    from engage_assets.delivery.engine import DeliveryEngine, EngineConfig
    from engage_assets.domain.pressure import PressurePolicy
    from resources.channels.outbox import OutboxPushChannel, OutboxSmsChannel
    from resources.channels.smtp import SmtpEmailChannel

    channels = {
        "email": SmtpEmailChannel(
            port=port, capture_dir=str(root / "mail"), rate_per_s=1e6, burst=10_000, max_connections=smtp_connections
        ),
        "sms": OutboxSmsChannel(root=str(root / "outbox"), rate_per_s=1e6, burst=10_000),
        "push": OutboxPushChannel(root=str(root / "outbox"), rate_per_s=1e6, burst=10_000),
    }
    policy = PressurePolicy(global_cap=1_000, quiet_start=dtime(0, 0), quiet_end=dtime(0, 0))
    return DeliveryEngine(
        DeliveryLedger(root / "delivery.sqlite"),
        channels,
        SyntheticCustomers(),
        SyntheticRenderer(),
        policy,
        EngineConfig(claim_lease_s=lease_s, page_size=page_size),
    )


def run_child(
    root: Path, port: int, crash_at: str | None, lease_s: int, timeout_s: float = 600, later_s: int = 0
) -> int:
    """One delivery process. Its send clock starts at NOW + `later_s`: a re-run after a crash must start later than
    the crashed run's claims (which carry its clock), as it does in life, or no claim can look old enough."""
    crash = ["--crash-at", crash_at] if crash_at else []
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engage_assets.demo.reliability",
            "deliver",
            "--root",
            str(root),
            "--port",
            str(port),
            "--lease",
            str(lease_s),
            "--later",
            str(later_s),
            *crash,
        ],
        timeout=timeout_s,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if proc.returncode not in (0, -9):
        raise RuntimeError(f"delivery child failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return proc.returncode


def count_received(root: Path, n: int, program: str = PROGRAM) -> dict[str, Any]:
    """What arrived: unique .eml files and outbox rows (and the duplicates the receivers dropped), checked
    against the exact set of idempotency keys the plan should produce."""
    from engage_assets.demo.smtp_capture import capture_path

    plan = trial_plan(n, program)
    keys = [idempotency_key(k) for k in plan.column("touchKey").to_pylist()]
    chans = plan.column("channel").to_pylist()
    want_email = {k for k, c in zip(keys, chans, strict=False) if c == "email"}
    want_sms = {k for k, c in zip(keys, chans, strict=False) if c == "sms"}
    mail_dir = capture_path(root / "mail", program, "x").parent
    got_email = {p.stem for p in mail_dir.glob("*.eml")} if mail_dir.exists() else set()
    log = root / "mail" / "received.log"
    dup_email = sum(1 for line in log.read_text().splitlines() if line.endswith(" dup")) if log.exists() else 0
    with sqlite3.connect(root / "outbox" / "sms.sqlite") as c:
        rows = c.execute("SELECT idempotency_key, received FROM messages").fetchall()
    got_sms = {k for k, _ in rows}
    ledger = DeliveryLedger(root / "delivery.sqlite")
    states: dict[str, int] = {}
    for (_, _, st, _), k in ledger.counts(program).items():
        states[st] = states.get(st, 0) + k
    ledger.close()
    return {
        "email_unique": len(got_email),
        "sms_unique": len(got_sms),
        "email_missing": len(want_email - got_email),
        "sms_missing": len(want_sms - got_sms),
        "unexpected": len(got_email - want_email) + len(got_sms - want_sms),
        "duplicates_dropped": dup_email + sum(r - 1 for _, r in rows),
        "ledger": states,
        "exactly_once": got_email == want_email and got_sms == want_sms and states == {"sent": n},
    }


def run_trial(root: Path, port: int, n: int, point: str, seed: int, timeout_s: float = 600) -> dict[str, Any]:
    """One trial in `root` (a fresh directory) against a capture server on `port` filing under root/mail."""
    ledger = DeliveryLedger(root / "delivery.sqlite")
    ledger.plan(trial_plan(n), PROGRAM, "trial", NOW)
    ledger.close()
    rng = random.Random(seed)
    pages = max(1, n // 500)
    k = rng.randint(1, pages) if point in ("before_claim", "after_claim") else rng.randint(1, max(1, n // 2))
    t0 = time.perf_counter()
    first = run_child(root, port, f"{point}:{k}", lease_s=0, timeout_s=timeout_s)
    # The re-run comes an hour (of the synthetic clock) later: past the crashed run's claims and their lease.
    second = run_child(root, port, None, lease_s=0, timeout_s=timeout_s, later_s=3600)
    result = count_received(root, n)
    return {
        "point": point,
        "k": k,
        "killed": first == -9,
        "rerun_rc": second,
        "seconds": round(time.perf_counter() - t0, 2),
        **result,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["deliver"])
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--lease", type=int, default=0)
    ap.add_argument("--later", type=int, default=0)
    ap.add_argument("--crash-at", default=None, help="<point>:<n>: SIGKILL this process at the n-th pass of point")
    args = ap.parse_args(argv)
    engine = engine_for(Path(args.root), args.port, args.lease)
    if args.crash_at:
        engine.checkpoint = CrashAt(args.crash_at)
    stats = engine.run([PROGRAM], NOW + args.later)
    print(json.dumps({"sent": stats.total("sent"), "recovered": stats.recovered}))


if __name__ == "__main__":
    main()
