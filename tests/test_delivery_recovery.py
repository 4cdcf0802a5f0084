"""Deliveries never strand (#13, item 2): a delivery run that failed before it changed the ledger is retried on a
later tick; touches a dead run left in `sending` are found by the due-touch sensor itself; and recovery re-checks
erasures, opt-outs, the suppression list and quiet hours before it sends anything again (both ledgers)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

import sensors.due_touches as due_touches
from engage_assets.delivery.engine import DeliveryEngine, EngineConfig
from engage_assets.domain.config import load_programs
from engage_assets.domain.pressure import PressurePolicy
from engage_assets.settings import program_config_dir
from resources.channels.outbox import OutboxSmsChannel
from resources.delivery_ledger.resource import SqliteDeliveryLedgerResource
from tests.delivery_support import FakeCustomerState, FakeRenderer, contact, outbox_count, plan_table
from tests.test_ledger_dynamodb import claim, key, store  # noqa: F401 - `store`: both ledgers, as a fixture

P = "win-back-campaigns"
JOB = "win_back_deliver"
NOW = int(datetime(2026, 8, 10, 12, 0, tzinfo=UTC).timestamp())  # noon UTC: 21:00 in Tokyo (quiet hours)


@dg.op
def smtp_relay_refuses_login() -> None:
    raise RuntimeError("the delivery run failed before it changed the ledger")


@dg.job(name=JOB)
def failing_deliver_job() -> None:
    smtp_relay_refuses_login()


@pytest.fixture
def sensor_parts(tmp_path):
    program = next(p for p in load_programs(program_config_dir()) if p.programId == P)
    res = SqliteDeliveryLedgerResource(path=str(tmp_path / "d.sqlite"))
    with dg.instance_for_test() as instance:

        def tick():
            return due_touches.build_due_touch_sensor(program, JOB)(
                dg.build_sensor_context(instance=instance, resources={"delivery_ledger": res})
            )

        yield res.ledger(), instance, tick


def test_a_failed_delivery_run_leaves_its_touches_due_for_a_later_tick(sensor_parts, monkeypatch):
    ledger, instance, tick = sensor_parts
    rows = [{"customerId": f"c{i}", "channel": "email", "dueAt": 100 + i} for i in range(3)]
    ledger.plan(plan_table(P, "p1", rows), P, "p1", NOW)
    first = tick()
    assert isinstance(first, dg.RunRequest) and first.run_key == "win-back-campaigns:due3:upto102"
    assert tick().run_key == first.run_key  # the same due set, no run yet: the same request (created once)

    failed = failing_deliver_job.execute_in_process(instance=instance, tags=first.tags, raise_on_error=False)
    assert not failed.success and ledger.due_summary(P, NOW) == (3, 102)  # nothing changed in the ledger
    waiting = tick()  # right after the failure: the retry waits a minute
    assert isinstance(waiting, dg.SkipReason) and "FAILURE" in (waiting.skip_message or "")

    monkeypatch.setattr(due_touches, "RETRY_WAIT_S", 0)
    retry = tick()
    assert isinstance(retry, dg.RunRequest) and retry.run_key == "win-back-campaigns:due3:upto102:attempt2"
    assert retry.tags[due_touches.DUE_SET_TAG] == first.run_key
    assert tick().run_key == retry.run_key  # tick-independent: the same attempt until it has run

    launched = instance.create_run_for_job(failing_deliver_job, tags=retry.tags, status=dg.DagsterRunStatus.STARTED)
    assert isinstance(tick(), dg.SkipReason)  # the retry is in progress
    instance.report_run_failed(launched)
    assert tick().run_key == "win-back-campaigns:due3:upto102:attempt3"


def test_the_retry_wait_doubles_up_to_an_hour():
    assert [due_touches.retry_wait_s(n) for n in (1, 2, 3, 7, 20)] == [60, 120, 240, 3600, 3600]


def test_touches_a_dead_run_left_sending_are_found_by_the_sensor(sensor_parts):
    ledger, instance, tick = sensor_parts
    now = int(time.time())
    ledger.plan(plan_table(P, "p1", [{"customerId": f"c{i}", "channel": "sms"} for i in range(3)]), P, "p1", now)
    for i in range(2):  # the run claimed two touches and died: nothing else is due
        assert claim(ledger, key(f"c{i}", "sms"), "deadrun-token", now - 30)
    assert claim(ledger, key("c2", "sms"), "deadrun-token", now - 3_600)
    assert ledger.due_summary(P, now)[0] == 0
    # Dagster still shows the dead run as started: claims older than the lease say it is not.
    instance.create_run_for_job(failing_deliver_job, status=dg.DagsterRunStatus.STARTED)
    request = tick()
    assert isinstance(request, dg.RunRequest), request
    assert request.run_key == "win-back-campaigns:due0:upto0:doubtdeadrun-toke"
    # Claims younger than the lease belong to a run that may still be sending: no request for them alone.
    assert ledger.reclaim(key("c2", "sms"), "deadrun-token", "live-run", now)
    assert isinstance(tick(), dg.SkipReason)


def test_recovery_rechecks_erasure_opt_outs_suppression_and_quiet_hours_before_resending(store, tmp_path):  # noqa: F811
    ledger = store()
    people = {
        "ok": contact("ok"),
        "opted": contact("opted", sms_opt_in=False),  # withdrew consent after the claim
        "gone": contact("gone"),  # erased after the claim
        "night": contact("night", time_zone="Asia/Tokyo"),
        "listed": contact("listed", phone="+15550000999"),
    }
    ledger.plan(plan_table(P, "p1", [{"customerId": c, "channel": "sms"} for c in people]), P, "p1", NOW)
    for c in people:
        assert claim(ledger, key(c, "sms"), "dead-run", NOW - 3_600)  # the run died before sending any
    ledger.add_suppression("sms", "+15550000999", "bounce:invalid_number", NOW - 60)
    engine = DeliveryEngine(
        store(),
        {"sms": OutboxSmsChannel(root=str(tmp_path / "outbox"))},
        FakeCustomerState(people, reasons={"gone": "erased"}),
        FakeRenderer(),
        PressurePolicy(),  # quiet hours 21:00-08:00 local
        EngineConfig(inline_backoff_s=0.001),
    )
    stats = engine.run([P], NOW)
    got = {c: (r.state, r.reason) for c in people if (r := ledger.get(key(c, "sms"))) is not None}
    assert got == {
        "ok": ("sent", "recovered:resent"),
        "opted": ("suppressed", "opted_out:sms"),
        "gone": ("suppressed", "erased"),
        "night": ("planned", "deferred:quiet_hours"),
        "listed": ("suppressed", "suppression_list:bounce:invalid_number"),
    }
    assert outbox_count(tmp_path / "outbox") == 1 and stats.recovered == 1
    morning = datetime(2026, 8, 11, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert ledger.get(key("night", "sms")).next_attempt_at == int(morning.timestamp())
    # The deferred touch goes out with the next run after its quiet hours; nothing else is sent again.
    assert engine.run([P], int(morning.timestamp())).total("sent") == 1
    assert outbox_count(tmp_path / "outbox") == 2
