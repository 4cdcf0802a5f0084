"""The send loop over the real ledger, the real SMTP capture server (aiosmtpd on a free port) and the real outbox:
conditions, caps, quiet hours, opt-outs, suppression list, rate limit, retries, outage, template errors."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path

import pytest

from engage_assets.delivery.engine import DeliveryEngine, EngineConfig
from engage_assets.demo.smtp_capture import capture_path, free_port, running_capture
from engage_assets.domain.pressure import PressurePolicy, ProgramCap, quiet_until
from resources.channels.outbox import OutboxPushChannel, OutboxSmsChannel
from resources.channels.smtp import SmtpEmailChannel
from resources.channels.throttle import TokenBucket
from resources.delivery_ledger.base import idempotency_key
from resources.delivery_ledger.sqlite import DeliveryLedger
from tests.delivery_support import FakeCustomerState, FakeRenderer, FakeTemplateError, contact, plan_table

P = "win-back-campaigns"
NOW = int(datetime(2026, 8, 10, 12, 0, tzinfo=UTC).timestamp())  # noon UTC: outside quiet hours
NO_QUIET = PressurePolicy(quiet_start=dtime(0, 0), quiet_end=dtime(0, 0))


@pytest.fixture
def capture(tmp_path):
    with running_capture(tmp_path / "mail") as (handler, port):
        yield handler, port, tmp_path / "mail"


def make_engine(tmp_path, port, contacts, reasons=None, policy=NO_QUIET, config=None, smtp_rate=5000.0, mail_root=None):
    ledger = DeliveryLedger(tmp_path / "delivery.sqlite")
    channels = {
        "email": SmtpEmailChannel(
            port=port,
            rate_per_s=smtp_rate,
            burst=1 if smtp_rate < 1000 else 500,
            capture_dir=str(mail_root) if mail_root else None,
            max_connections=2,
        ),
        "sms": OutboxSmsChannel(root=str(tmp_path / "outbox")),
        "push": OutboxPushChannel(root=str(tmp_path / "outbox")),
    }
    cfg = config or EngineConfig(inline_backoff_s=0.001)
    return ledger, DeliveryEngine(
        ledger,
        channels,
        FakeCustomerState(contacts, reasons),
        FakeRenderer(),
        policy,
        cfg,
        template_errors=(FakeTemplateError,),
    )


def outbox_rows(tmp_path, channel="sms"):
    with sqlite3.connect(tmp_path / "outbox" / f"{channel}.sqlite") as c:
        return c.execute("SELECT idempotency_key, received FROM messages").fetchall()


def states(ledger):
    return {(ch, st, r): n for (_, ch, st, r), n in ledger.counts().items()}


def test_plan_holdout_replan_never_unsends(tmp_path):
    ledger = DeliveryLedger(tmp_path / "d.sqlite")
    rows = [{"customerId": f"c{i}", "channel": "email"} for i in range(4)] + [
        {"customerId": "c9", "channel": "email", "holdout": True}
    ]
    r = ledger.plan(plan_table(P, "2026-08-03", rows), P, "2026-08-03", NOW)
    assert (r.inserted, r.held_out) == (5, 1)
    assert ledger.get(f"{P}#c9#s-c9#t1#email").reason == "held_out"
    # c0 gets sent; the re-plan drops c1 and c0, moves c2's send time, adds c5.
    with ledger.transaction() as conn:
        assert ledger.claim(conn, f"{P}#c0#s-c0#t1#email", "tok", NOW)
    ledger.mark_sent(f"{P}#c0#s-c0#t1#email", "tok", "m1", NOW)
    rows2 = [
        {"customerId": "c2", "channel": "email", "dueAt": 5_000},
        {"customerId": "c3", "channel": "email"},
        {"customerId": "c5", "channel": "email"},
        {"customerId": "c9", "channel": "email", "holdout": True},
    ]
    r2 = ledger.plan(plan_table(P, "2026-08-03", rows2), P, "2026-08-03", NOW)
    assert (r2.inserted, r2.replaced, r2.removed, r2.kept) == (1, 2, 1, 1)
    assert ledger.get(f"{P}#c0#s-c0#t1#email").state == "sent"
    assert ledger.get(f"{P}#c1#s-c1#t1#email") is None
    assert ledger.get(f"{P}#c2#s-c2#t1#email").next_attempt_at == 5_000
    # re-planning a sent touch never un-sends it
    ledger.plan(plan_table(P, "2026-08-03", [{"customerId": "c0", "channel": "email"}]), P, "2026-08-03", NOW)
    assert ledger.get(f"{P}#c0#s-c0#t1#email").state == "sent"


def test_every_channel_delivers_once_and_mail_is_readable(tmp_path, capture):
    handler, port, mail = capture
    custs = [f"c{i:03d}" for i in range(30)]
    rows = [{"customerId": c, "channel": ch, "touchId": ch} for c in custs for ch in ("email", "sms", "push")]
    ledger, engine = make_engine(tmp_path, port, {c: contact(c) for c in custs}, mail_root=mail)
    ledger.plan(plan_table(P, "p1", rows), P, "p1", NOW)
    stats = engine.run([P], NOW)
    assert stats.by_channel() == {"email": {"sent": 30}, "sms": {"sent": 30}, "push": {"sent": 30}}
    files = sorted((mail / "win-back-campaigns").glob("*.eml"))
    assert len(files) == 30 and handler.received == 30
    text = files[0].read_text()
    assert "Subject: Offer for Name c" in text and "X-Engage-Idempotency-Key:" in text
    assert len(outbox_rows(tmp_path, "sms")) == 30 and len(outbox_rows(tmp_path, "push")) == 30
    # a second run finds nothing due and sends nothing
    assert engine.run([P], NOW + 10).total() == 0
    assert handler.received == 30


def test_conditions_expiry_optouts_invalid_addresses(tmp_path, capture):
    _, port, _ = capture
    contacts = {
        "ok": contact("ok"),
        "conv": contact("conv"),
        "mkt": contact("mkt", marketing_opt_out=True),
        "nosms": contact("nosms", sms_opt_in=False),
        "bademail": contact("bademail", email="not-an-email"),
        "badphone": contact("badphone", phone="555-1234"),
        "exp": contact("exp"),
    }
    rows = [
        {"customerId": "ok", "channel": "email"},
        {"customerId": "conv", "channel": "email"},
        {"customerId": "mkt", "channel": "email"},
        {"customerId": "nosms", "channel": "sms"},
        {"customerId": "bademail", "channel": "email"},
        {"customerId": "badphone", "channel": "sms"},
        {"customerId": "exp", "channel": "email", "expiresAt": NOW - 1},
        {"customerId": "gone", "channel": "email"},
        {"customerId": "ok", "channel": "sms", "templateId": "broken"},
    ]
    ledger, engine = make_engine(tmp_path, port, contacts, reasons={"conv": "converted"})
    ledger.plan(plan_table(P, "p1", rows), P, "p1", NOW)
    stats = engine.run([P], NOW)
    got = states(ledger)
    assert got[("email", "sent", None)] == 1
    assert got[("email", "suppressed", "converted")] == 1
    assert got[("email", "suppressed", "opted_out:marketing")] == 1
    assert got[("sms", "suppressed", "opted_out:sms")] == 1
    assert got[("email", "suppressed", "invalid_address:email")] == 1
    assert got[("sms", "suppressed", "invalid_address:sms")] == 1
    assert got[("email", "suppressed", "offer_expired")] == 1
    assert got[("email", "suppressed", "no_contact")] == 1
    assert got[("sms", "failed", "template:missing_field:discountCode")] == 1
    assert stats.total("sent") == 1


def test_global_and_program_caps_across_programs(tmp_path, capture):
    _, port, _ = capture
    policy = PressurePolicy(
        global_cap=3,
        quiet_start=dtime(0, 0),
        quiet_end=dtime(0, 0),
        program_caps={"churn-prevention": ProgramCap(1, 91)},
    )
    ledger, engine = make_engine(tmp_path, port, {"c1": contact("c1"), "c2": contact("c2")}, policy=policy)
    # c1: five touches over two programs: the global cap (3 in 7 days) lets three through.
    ledger.plan(
        plan_table(P, "p1", [{"customerId": "c1", "channel": ch, "touchId": ch} for ch in ("email", "sms", "push")]),
        P,
        "p1",
        NOW,
    )
    ledger.plan(
        plan_table(
            "churn-prevention",
            "p1",
            [
                {"customerId": "c1", "channel": "email", "subjectId": "x"},
                {"customerId": "c2", "channel": "email", "subjectId": "a"},
                {"customerId": "c2", "channel": "sms", "subjectId": "a"},
                {"customerId": "c2", "channel": "email", "subjectId": "b"},
            ],
        ),
        "churn-prevention",
        "p1",
        NOW,
    )
    engine.run([P, "churn-prevention"], NOW)
    assert ledger.get("churn-prevention#c1#x#t1#email").reason == "global_cap"
    # c2: the program allows one subject per quarter: both touches of subject a go, subject b is capped.
    assert ledger.get("churn-prevention#c2#a#t1#email").state == "sent"
    assert ledger.get("churn-prevention#c2#a#t1#sms").state == "sent"
    assert ledger.get("churn-prevention#c2#b#t1#email").reason == "program_cap"
    # in-app is not counted by the global cap
    assert "in-app" not in PressurePolicy().counted_channels


def test_quiet_hours_defer_to_local_morning(tmp_path, capture):
    _, port, _ = capture
    tokyo_late = int(datetime(2026, 8, 10, 14, 30, tzinfo=UTC).timestamp())  # 23:30 in Tokyo
    ledger, engine = make_engine(tmp_path, port, {"jp": contact("jp", time_zone="Asia/Tokyo")}, policy=PressurePolicy())
    ledger.plan(plan_table(P, "p1", [{"customerId": "jp", "channel": "sms"}]), P, "p1", tokyo_late)
    stats = engine.run([P], tokyo_late)
    row = ledger.get(f"{P}#jp#s-jp#t1#sms")
    assert stats.by_channel() == {"sms": {"deferred": 1}} and row.state == "planned"
    morning = int(datetime(2026, 8, 10, 23, 0, tzinfo=UTC).timestamp())  # 08:00 in Tokyo
    assert row.next_attempt_at == morning and row.reason == "deferred:quiet_hours"
    assert engine.run([P], morning).by_channel() == {"sms": {"sent": 1}}
    assert quiet_until(morning, "Asia/Tokyo", dtime(21), dtime(8)) is None


def test_suppression_list_and_bounce(tmp_path):
    class Bouncer:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address.startswith("bounce"):
                return "550 5.1.1 mailbox unavailable"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    from aiosmtpd.controller import Controller

    port = free_port()
    ctl = Controller(Bouncer(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        contacts = {
            "b1": contact("b1", email="bounce@example.com"),
            "b2": contact("b2", email="bounce@example.com"),
            "ok": contact("ok"),
        }
        ledger, engine = make_engine(tmp_path, port, contacts)
        ledger.plan(
            plan_table(
                P,
                "p1",
                [
                    {"customerId": "b1", "channel": "email", "dueAt": 1},
                    {"customerId": "ok", "channel": "email", "dueAt": 2},
                ],
            ),
            P,
            "p1",
            NOW,
        )
        engine.run([P], NOW)
        assert ledger.get(f"{P}#b1#s-b1#t1#email").reason == "bounce:smtp_550"
        assert ledger.get(f"{P}#ok#s-ok#t1#email").state == "sent"
        # the address is now on the suppression list: another customer with it is suppressed before any send
        ledger.plan(plan_table(P, "p2", [{"customerId": "b2", "channel": "email"}]), P, "p2", NOW)
        engine.run([P], NOW)
        assert ledger.get(f"{P}#b2#s-b2#t1#email").reason == "suppression_list:bounce:smtp_550"
    finally:
        ctl.stop()


def test_transient_errors_retried_permanent_not(tmp_path):
    class Flaky:
        def __init__(self):
            self.calls = 0

        async def handle_DATA(self, server, session, envelope):
            self.calls += 1
            if b"perm" in envelope.content:
                return "554 5.7.1 rejected"
            return "451 4.3.0 try again" if self.calls % 2 else "250 OK"

    from aiosmtpd.controller import Controller

    flaky, port = Flaky(), free_port()
    ctl = Controller(flaky, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        contacts = {"a": contact("a"), "perm": contact("perm", customer_name="perm")}
        ledger, engine = make_engine(tmp_path, port, contacts)
        ledger.plan(
            plan_table(P, "p1", [{"customerId": "a", "channel": "email"}, {"customerId": "perm", "channel": "email"}]),
            P,
            "p1",
            NOW,
        )
        engine.run([P], NOW)
        assert ledger.get(f"{P}#a#s-a#t1#email").state == "sent"  # 451, then 250 on the inline retry
        perm = ledger.get(f"{P}#perm#s-perm#t1#email")
        assert (perm.state, perm.reason, perm.attempts) == ("failed", "permanent:smtp_554", 1)
    finally:
        ctl.stop()


def test_outage_leaves_touches_due_then_later_run_delivers(tmp_path):
    port = free_port()  # nothing listens: connection refused
    custs = [f"c{i}" for i in range(40)]
    cfg = EngineConfig(inline_backoff_s=0.001, outage_after=3, outage_delay_s=600, retry_delay_s=60)
    ledger, engine = make_engine(tmp_path, port, {c: contact(c) for c in custs}, config=cfg)
    ledger.plan(plan_table(P, "p1", [{"customerId": c, "channel": "email"} for c in custs]), P, "p1", NOW)
    t0 = time.monotonic()
    stats = engine.run([P], NOW)
    assert time.monotonic() - t0 < 20
    assert stats.total("sent") == 0 and stats.total("failed") == 0
    rows = [ledger.get(f"{P}#{c}#s-{c}#t1#email") for c in custs]
    assert all(r.state == "planned" and r.next_attempt_at > NOW for r in rows)
    assert {r.reason for r in rows} <= {"retry:smtp_connect", "provider_unavailable", "deferred:provider_unavailable"}
    with running_capture(tmp_path / "mail", port=port) as (handler, _):
        assert engine.run([P], NOW + 30).total("sent") == 0  # not due yet (retry after 60 s, outage 600 s)
        later = engine.run([P], NOW + 3600)
    assert later.total("sent") == 40 and handler.received == 40


def test_retries_exhausted_fail(tmp_path):
    port = free_port()
    cfg = EngineConfig(inline_backoff_s=0.001, inline_retries=0, max_attempts=2, retry_delay_s=10, outage_after=99)
    ledger, engine = make_engine(tmp_path, port, {"a": contact("a")}, config=cfg)
    ledger.plan(plan_table(P, "p1", [{"customerId": "a", "channel": "email"}]), P, "p1", NOW)
    engine.run([P], NOW)
    assert ledger.get(f"{P}#a#s-a#t1#email").reason == "retry:smtp_connect"
    engine.run([P], NOW + 11)
    row = ledger.get(f"{P}#a#s-a#t1#email")
    assert (row.state, row.reason, row.attempts) == ("failed", "retries_exhausted:smtp_connect", 2)


def test_rate_limit(tmp_path, capture):
    _, port, _ = capture
    custs = [f"c{i}" for i in range(30)]
    ledger, engine = make_engine(tmp_path, port, {c: contact(c) for c in custs}, smtp_rate=100.0)
    ledger.plan(plan_table(P, "p1", [{"customerId": c, "channel": "email"} for c in custs]), P, "p1", NOW)
    t0 = time.monotonic()
    assert engine.run([P], NOW).total("sent") == 30
    assert time.monotonic() - t0 >= 0.28  # 30 sends at 100/s with a bucket of 1

    clock = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        clock[0] += s

    bucket = TokenBucket(10, 5, clock=lambda: clock[0], sleep=sleep)
    for _ in range(25):
        bucket.take()
    assert clock[0] == pytest.approx(2.0)  # 5 from the burst, 20 at 10/s


def test_idempotency_key_travels_and_capture_dedupes(tmp_path, capture):
    handler, port, mail = capture
    from resources.channels.base import OutboundMessage

    session = SmtpEmailChannel(port=port, capture_dir=str(mail)).open()
    msg = OutboundMessage(idempotency_key("k1"), "h", P, "c1", "email", "c1@example.com", "s", "t")
    assert session.lookup(msg) is None
    session.send(msg)
    session.send(msg)
    session.close()
    assert handler.received == 2 and handler.duplicates == 1
    assert capture_path(mail, P, idempotency_key("k1")).exists() and session.lookup(msg)
    assert (Path(mail) / "received.log").read_text().split()[1::2] == ["new", "dup"]


def test_due_touch_sensor_run_key_from_ledger_not_clock(tmp_path):
    import dagster as dg

    from engage_assets.domain.config import load_programs
    from engage_assets.settings import program_config_dir
    from resources.delivery_ledger.resource import SqliteDeliveryLedgerResource
    from sensors.due_touches import build_due_touch_sensor

    program = next(p for p in load_programs(program_config_dir()) if p.programId == "win-back-campaigns")
    sensor = build_due_touch_sensor(program, "win_back_deliver")
    res = SqliteDeliveryLedgerResource(path=str(tmp_path / "d.sqlite"))
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"delivery_ledger": res})
        assert isinstance(sensor(ctx), dg.SkipReason)
        res.ledger().plan(
            plan_table(P, "p1", [{"customerId": f"c{i}", "channel": "email", "dueAt": 100 + i} for i in range(3)]),
            P,
            "p1",
            NOW,
        )
        first = sensor(dg.build_sensor_context(instance=instance, resources={"delivery_ledger": res}))
        again = sensor(dg.build_sensor_context(instance=instance, resources={"delivery_ledger": res}))
        assert first.run_key == again.run_key == "win-back-campaigns:due3:upto102"


def test_sent_marks_batched_only_where_the_receiver_dedupes(tmp_path, capture):
    """The outbox drops a repeated key, so its `sent` marks go in batches (a crash leaves them for lookup); an SMTP
    relay without the capture server may not, so each of its marks is written right after its send."""
    _, port, _ = capture
    calls = {"one": 0, "many": []}

    class CountingLedger(DeliveryLedger):
        def mark_sent(self, *a, **k):
            calls["one"] += 1
            return super().mark_sent(*a, **k)

        def mark_sent_many(self, marks, *a, **k):
            marks = list(marks)
            calls["many"].append(len(marks))
            return super().mark_sent_many(marks, *a, **k)

    custs = [f"c{i:03d}" for i in range(250)]
    _, engine = make_engine(
        tmp_path,
        port,
        {c: contact(c) for c in custs},
        config=EngineConfig(inline_backoff_s=0.001, mark_batch=100, page_size=200),
    )
    engine.ledger = ledger = CountingLedger(tmp_path / "delivery.sqlite")
    ledger.plan(
        plan_table(P, "p1", [{"customerId": c, "channel": "sms" if i % 2 else "email"} for i, c in enumerate(custs)]),
        P,
        "p1",
        NOW,
    )
    assert engine.run([P], NOW).total("sent") == 250
    assert calls["one"] == 125  # every e-mail (relay: no de-duplication) marked alone
    assert calls["many"] == [100, 25]  # SMS: page 1 (200 touches) fills one batch; page 2's 25 at its end
    assert states(ledger) == {("email", "sent", None): 125, ("sms", "sent", None): 125}
