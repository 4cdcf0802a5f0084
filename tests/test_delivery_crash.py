"""Reliability: SIGKILL the delivery process at every crash point, re-run, and count at the receivers.

Each trial: 500 touches (half e-mail through a real SMTP exchange with the aiosmtpd capture server, half SMS to the
outbox), a child process killed by SIGKILL at a random pass of the crash point, then a second child that finishes.
Exactly once = the set of captured .eml files and outbox rows equals the set of planned idempotency keys, and the
ledger says `sent` for every touch.  The full run (20 trials × 10,000 touches) is `bench/bench_delivery.py`.
"""

from __future__ import annotations

import pytest

from engage_assets.delivery.engine import CRASH_POINTS
from engage_assets.demo.reliability import run_trial
from engage_assets.demo.smtp_capture import free_port, running_capture


@pytest.mark.parametrize("point", CRASH_POINTS + ("after_send",))
def test_sigkill_then_rerun_delivers_exactly_once(tmp_path, point, request):
    seed = sum(map(ord, request.node.name))
    with running_capture(tmp_path / "mail", port=free_port()) as (handler, port):
        result = run_trial(tmp_path, port, n=500, point=point, seed=seed)
    assert result["killed"], result
    assert result["exactly_once"], result
    assert result["email_unique"] == 250 and result["sms_unique"] == 250
    assert result["email_missing"] == result["sms_missing"] == result["unexpected"] == 0
    if point == "before_claim":
        assert result["duplicates_dropped"] == 0  # nothing was claimed, so nothing was in doubt


def test_two_processes_at_once_send_each_touch_once(tmp_path):
    import subprocess
    import sys

    from engage_assets.demo.reliability import NOW, PROGRAM, count_received, trial_plan
    from resources.delivery_ledger.sqlite import DeliveryLedger

    ledger = DeliveryLedger(tmp_path / "delivery.sqlite")
    ledger.plan(trial_plan(1000), PROGRAM, "trial", NOW)
    with running_capture(tmp_path / "mail", port=free_port()) as (handler, port):
        cmd = [
            sys.executable,
            "-m",
            "engage_assets.demo.reliability",
            "deliver",
            "--root",
            str(tmp_path),
            "--port",
            str(port),
            "--lease",
            "600",
        ]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE) for _ in range(2)]
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
    result = count_received(tmp_path, 1000)
    assert result["exactly_once"] and result["duplicates_dropped"] == 0, result
