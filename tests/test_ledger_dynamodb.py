"""One contract for both delivery ledgers: SQLite (a file under tmp_path) and DynamoDB (a real moto server, a table
per test).  Every test but the backend-selection one runs the same assertions against both, the engine end to end
included, so the DynamoDB ledger keeps SQLite's semantics: plan/re-plan, due paging, exclusive token-guarded
claims, recovery, contact pressure, suppression list, counts and erasure."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from datetime import time as dtime

import pyarrow as pa
import pytest

from engage_assets.delivery.engine import DeliveryEngine, EngineConfig
from engage_assets.domain.pressure import PressurePolicy, PressureState, legacy_address_hash
from resources.channels.outbox import OutboxPushChannel, OutboxSmsChannel
from resources.delivery_ledger.dynamodb import DynamoDbDeliveryLedger
from resources.delivery_ledger.sqlite import DeliveryLedger
from tests.delivery_support import FakeCustomerState, FakeRenderer, contact, plan_table

P = "win-back-campaigns"
NOW = int(datetime(2026, 8, 10, 12, 0, tzinfo=UTC).timestamp())  # noon UTC: outside quiet hours
NO_QUIET = PressurePolicy(quiet_start=dtime(0, 0), quiet_end=dtime(0, 0))


def key(cust: str, channel: str = "email", program: str = P, touch: str = "t1") -> str:
    return f"{program}#{cust}#s-{cust}#{touch}#{channel}"


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    """Opens handles on one fresh ledger: each call is another "process" (its own ledger object, and for SQLite
    its own connection when used from another thread)."""
    if request.param == "sqlite":
        opened: list[DeliveryLedger] = []

        def open_sqlite() -> DeliveryLedger:
            opened.append(DeliveryLedger(tmp_path / "delivery.sqlite"))
            return opened[-1]

        yield open_sqlite
        for led in opened:
            led.close()
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        table = f"delivery-{uuid.uuid4().hex[:12]}"
        DynamoDbDeliveryLedger(table, region_name="us-east-1", endpoint_url=endpoint).create_table()
        yield lambda: DynamoDbDeliveryLedger(table, region_name="us-east-1", endpoint_url=endpoint)


@pytest.fixture
def ledger(store):
    return store()


def claim(ledger, touch_key: str, token: str, now: int = NOW) -> bool:
    with ledger.transaction() as conn:
        return ledger.claim(conn, touch_key, token, now)


def contacts(ledger, customers: list[str], since: int) -> list[tuple]:
    with ledger.transaction() as conn:
        return sorted(ledger.contacts_since(conn, customers, since))


def stored_text(ledger) -> str:
    """Everything the ledger stores, as text (to prove what it does not store)."""
    if isinstance(ledger, DynamoDbDeliveryLedger):
        return json.dumps(ledger.client().scan(TableName=ledger.table_name)["Items"])
    with sqlite3.connect(ledger.path) as c:
        return "\n".join(c.iterdump())


def test_plan_holdout_replan_remove_never_unsends(ledger):
    rows = [{"customerId": f"c{i}", "channel": "email"} for i in range(4)] + [
        {"customerId": "c9", "channel": "email", "holdout": True}
    ]
    r = ledger.plan(plan_table(P, "2026-08-03", rows), P, "2026-08-03", NOW)
    assert (r.inserted, r.replaced, r.removed, r.kept, r.held_out) == (5, 0, 0, 0, 1)
    held = ledger.get(key("c9"))
    assert (held.state, held.reason) == ("suppressed", "held_out")
    # c0 is sent; c3 fails transiently (attempts 1, due again at 9,000).
    assert claim(ledger, key("c0"), "tok") and ledger.mark_sent(key("c0"), "tok", "m1", NOW)
    assert claim(ledger, key("c3"), "tok") and ledger.mark_retry(key("c3"), "tok", "retry:x", 9_000, NOW)
    # The re-plan drops c1 and c0, moves c2's and c3's send times, adds c5.
    rows2 = [
        {"customerId": "c2", "channel": "email", "dueAt": 5_000},
        {"customerId": "c3", "channel": "email", "dueAt": 2_000},
        {"customerId": "c5", "channel": "email"},
        {"customerId": "c9", "channel": "email", "holdout": True},
    ]
    r2 = ledger.plan(plan_table(P, "2026-08-03", rows2), P, "2026-08-03", NOW + 1)
    assert (r2.inserted, r2.replaced, r2.removed, r2.kept, r2.held_out) == (1, 2, 1, 1, 1)
    assert ledger.get(key("c0")).state == "sent"
    assert ledger.get(key("c1")) is None
    assert ledger.get(key("c2")).next_attempt_at == 5_000  # never attempted: the new send time
    c3 = ledger.get(key("c3"))  # attempted: the later of its retry time and the new send time, attempts kept
    assert (c3.state, c3.next_attempt_at, c3.attempts, c3.reason) == ("planned", 9_000, 1, None)
    assert ledger.get(key("c5")).touch_dict()["offer"] == json.dumps({"discount": 50})
    # re-planning a sent touch never un-sends it; another partition's touches are not removed
    ledger.plan(plan_table(P, "2026-08-10", [{"customerId": "c7", "channel": "email"}]), P, "2026-08-10", NOW)
    r3 = ledger.plan(plan_table(P, "2026-08-03", [{"customerId": "c0", "channel": "email"}]), P, "2026-08-03", NOW)
    assert (r3.inserted, r3.replaced, r3.removed, r3.kept) == (0, 0, 3, 1)  # c2, c3, c5 removed
    assert ledger.get(key("c0")).state == "sent" and ledger.get(key("c7")).state == "planned"
    with pytest.raises(ValueError, match="another program"):
        ledger.plan(plan_table("other", "2026-08-03", rows), P, "2026-08-03", NOW)


def test_plan_partitions_is_plan_per_partition_in_one_call(ledger):
    """A reactive batch plans one partition per cart in one call: the same touches and counts as one `plan` per
    partition, and each partition's re-plan removes only that partition's planned touches."""
    first = pa.concat_tables(
        [plan_table(P, part, [{"customerId": cust, "channel": "email"}]) for part, cust in (("k1", "a"), ("k2", "b"))]
    )
    r = ledger.plan_partitions(first, P, NOW)
    assert (r.inserted, r.replaced, r.removed, r.kept) == (2, 0, 0, 0)
    assert ledger.get(key("a")).partition_key == "k1" and ledger.get(key("b")).partition_key == "k2"
    # k1 re-planned for another customer (a leaves), k2 untouched, k3 new: only k1's planned touch goes.
    second = pa.concat_tables(
        [plan_table(P, part, [{"customerId": cust, "channel": "email"}]) for part, cust in (("k1", "c"), ("k3", "d"))]
    )
    r2 = ledger.plan_partitions(second, P, NOW + 1)
    assert (r2.inserted, r2.replaced, r2.removed, r2.kept) == (2, 0, 1, 0)
    assert ledger.get(key("a")) is None and ledger.get(key("b")).state == "planned"
    assert {ledger.get(key(c)).partition_key for c in "cd"} == {"k1", "k3"}


def test_due_pages_oldest_first_keyset_paged(ledger):
    due_at = {"a": 300, "b": 100, "c": 200, "d": 100, "e": 400, "f": 200, "g": 5_000}
    ledger.plan(
        plan_table(P, "p1", [{"customerId": c, "channel": "sms", "dueAt": t} for c, t in due_at.items()]), P, "p1", NOW
    )
    ledger.plan(plan_table("other", "p1", [{"customerId": "z", "channel": "sms", "dueAt": 1}]), "other", "p1", NOW)
    assert ledger.due_summary(P, 1_000) == (6, 400)
    assert ledger.next_due_at(P) == 100
    expected = sorted((t, key(c, "sms")) for c, t in due_at.items() if t <= 1_000)
    pages = []
    for page in ledger.due(P, 1_000, page_size=4):  # the engine claims each page before it asks for the next
        pages.append([(r.next_attempt_at, r.touch_key) for r in page])
        with ledger.transaction() as conn:
            assert all(ledger.claim(conn, r.touch_key, "tok", NOW) for r in page)
    assert [len(p) for p in pages] == [4, 2] and [k for p in pages for k in p] == expected
    assert list(ledger.due(P, 1_000)) == [] and ledger.due_summary(P, 1_000) == (0, None)
    assert ledger.next_due_at(P) == 5_000
    # a deferred touch is due again only from its new time; paging never repeats or skips a touch
    with ledger.transaction() as conn:
        assert ledger.defer(conn, key("g", "sms"), 6_000, "deferred:quiet_hours", NOW)
    assert list(ledger.due(P, 5_999)) == []
    assert [[r.touch_key for r in p] for p in ledger.due(P, 6_000, page_size=1)] == [[key("g", "sms")]]
    assert ledger.get(key("g", "sms")).reason == "deferred:quiet_hours"


def test_claim_once_and_every_transition_guarded_by_the_token(ledger):
    ledger.plan(
        plan_table(P, "p1", [{"customerId": c, "channel": "email"} for c in ("a", "b", "c", "d", "e")]), P, "p1", NOW
    )
    k = key("a")
    assert claim(ledger, k, "A") is True
    assert claim(ledger, k, "B") is False  # the second claimer loses
    row = ledger.get(k)
    assert (row.state, row.claim_token, row.claimed_at, row.attempts) == ("sending", "A", NOW, 1)
    assert not ledger.mark_sent(k, "B", "m", NOW) and not ledger.mark_failed(k, "B", "x", NOW)
    assert not ledger.mark_retry(k, "B", "x", NOW, NOW) and not ledger.suppress(None, k, "x", NOW, token="B")
    assert not ledger.suppress(None, k, "x", NOW)  # a claimed touch is only suppressed by its claimer
    assert ledger.mark_retry(k, "A", "retry:smtp_451", NOW + 60, NOW)
    row = ledger.get(k)
    assert (row.state, row.claim_token, row.claimed_at, row.attempts, row.next_attempt_at, row.reason) == (
        "planned",
        None,
        None,
        1,
        NOW + 60,
        "retry:smtp_451",
    )
    assert [r.touch_key for p in ledger.due(P, NOW + 59) for r in p] == [key(c) for c in "bcde"]
    assert claim(ledger, k, "C", NOW + 60) and ledger.get(k).attempts == 2
    assert not ledger.mark_failed(k, "A", "permanent:x", NOW)  # the old token lost the touch
    assert ledger.mark_failed(k, "C", "retries_exhausted:smtp_451", NOW + 61)
    assert (ledger.get(k).state, ledger.get(k).reason) == ("failed", "retries_exhausted:smtp_451")
    assert not ledger.mark_sent(k, "C", "m", NOW)  # nothing leaves failed
    # suppressed by its claimer (a bounce), or while still planned (a re-check)
    assert claim(ledger, key("b"), "T") and ledger.suppress(None, key("b"), "bounce:smtp_550", NOW, token="T")
    assert (ledger.get(key("b")).state, ledger.get(key("b")).reason) == ("suppressed", "bounce:smtp_550")
    with ledger.transaction() as conn:
        assert ledger.suppress(conn, key("c"), "converted", NOW)
    assert not claim(ledger, key("c"), "T")
    # batched sent marks: only touches sending under the token count
    assert claim(ledger, key("d"), "T") and claim(ledger, key("e"), "T")
    marks = [(key("d"), "pd", None), (key("e"), "pe", "recovered:found"), (key("c"), "pc", None), (k, "pa", None)]
    assert ledger.mark_sent_many(marks, "T", NOW + 5) == 2
    d, e = ledger.get(key("d")), ledger.get(key("e"))
    assert (d.state, d.provider_id, d.sent_at, d.reason) == ("sent", "pd", NOW + 5, None)
    assert (e.state, e.provider_id, e.reason) == ("sent", "pe", "recovered:found")
    assert ledger.mark_sent_many([], "T", NOW) == 0


def test_in_doubt_and_reclaim(ledger):
    ledger.plan(plan_table(P, "p1", [{"customerId": c, "channel": "sms"} for c in ("a", "b", "c")]), P, "p1", NOW)
    for c, at in (("a", NOW - 700), ("b", NOW - 650), ("c", NOW - 10)):
        assert claim(ledger, key(c, "sms"), "old", at)
    pages = list(ledger.in_doubt(P, NOW - 600, page_size=1))
    assert [len(p) for p in pages] == [1, 1]
    assert {r.touch_key for p in pages for r in p} == {key("a", "sms"), key("b", "sms")}
    assert {r.claim_token for p in pages for r in p} == {"old"}
    assert not ledger.reclaim(key("a", "sms"), "wrong", "new", NOW)
    assert ledger.reclaim(key("a", "sms"), "old", "new", NOW)
    assert not ledger.reclaim(key("a", "sms"), "old", "newer", NOW)  # another run resolved it first
    assert [r.touch_key for p in ledger.in_doubt(P, NOW - 600) for r in p] == [key("b", "sms")]
    assert not ledger.mark_sent(key("a", "sms"), "old", "m", NOW)
    assert ledger.mark_sent(key("a", "sms"), "new", "m", NOW, reason="recovered:resent")
    assert (ledger.get(key("a", "sms")).state, ledger.get(key("a", "sms")).claimed_at) == ("sent", NOW)
    # the reclaimed contact counts from its new claim time
    assert contacts(ledger, ["a"], NOW - 1) == [("a", P, "s-a", "sms", NOW)]
    assert list(ledger.in_doubt(P, NOW - 800)) == []


def test_contacts_since_counts_touches_claimed_or_sent(ledger):
    rows = [{"customerId": "c1", "channel": ch, "touchId": ch} for ch in ("email", "sms", "push", "in-app")]
    rows += [{"customerId": "c2", "channel": "email", "subjectId": "x"}]
    ledger.plan(plan_table(P, "p1", rows), P, "p1", NOW)
    k1 = {ch: key("c1", ch, touch=ch) for ch in ("email", "sms", "push", "in-app")}
    assert claim(ledger, k1["email"], "t", NOW - 100) and ledger.mark_sent(k1["email"], "t", "m", NOW - 99)
    assert claim(ledger, k1["sms"], "t", NOW - 50)  # still sending: counts
    assert claim(ledger, k1["push"], "t", NOW - 30) and ledger.mark_failed(k1["push"], "t", "permanent:x", NOW)
    assert claim(ledger, k1["in-app"], "t", NOW - 20) and ledger.mark_retry(k1["in-app"], "t", "r", NOW + 9, NOW)
    assert claim(ledger, f"{P}#c2#x#t1#email", "t", NOW - 5)
    assert contacts(ledger, ["c1", "c2", "c1", "nobody"], NOW - 60) == [
        ("c1", P, "s-c1", "sms", NOW - 50),
        ("c2", P, "x", "email", NOW - 5),
    ]
    assert contacts(ledger, ["c1"], NOW - 200) == [
        ("c1", P, "s-c1", "email", NOW - 100),
        ("c1", P, "s-c1", "sms", NOW - 50),
    ]
    assert ledger.suppress(None, f"{P}#c2#x#t1#email", "bounce:smtp_550", NOW, token="t")
    assert contacts(ledger, ["c2"], 0) == [] and contacts(ledger, [], 0) == []
    # a retried touch counts again once claimed again
    assert claim(ledger, k1["in-app"], "u", NOW + 10)
    assert contacts(ledger, ["c1"], NOW) == [("c1", P, "s-c1", "in-app", NOW + 10)]


def test_suppression_list_keeps_keyed_hashes_not_addresses(ledger):
    ledger.add_suppression("email", " Bounce@Example.com ", "bounce:smtp_550", NOW)
    ledger.add_suppression("email", "bounce@example.com", "complaint", NOW + 1)  # first reason wins
    ledger.add_suppression("sms", "+15550000001", "invalid_address", NOW)
    with ledger.transaction() as conn:
        assert ledger.suppressed_addresses(
            conn, "email", ["bounce@example.com", "BOUNCE@example.com ", "ok@example.com"]
        ) == {"bounce@example.com": "bounce:smtp_550"}
        assert ledger.suppressed_addresses(conn, "sms", ["+15550000001", "bounce@example.com"]) == {
            "+15550000001": "invalid_address"
        }
        assert ledger.suppressed_addresses(conn, "push", []) == {}
    text = stored_text(ledger).lower()
    assert "bounce@example.com" not in text and "15550000001" not in text
    assert ledger.hashes.of("bounce@example.com") in text  # HMAC under the deployment's key ...
    assert legacy_address_hash("+15550000001") not in text  # ... never a plain SHA-256 (reversible for phones)


def test_counts(ledger):
    ledger.plan(
        plan_table(
            P,
            "p1",
            [{"customerId": c, "channel": "email"} for c in ("a", "b", "c")]
            + [{"customerId": "h", "channel": "sms", "holdout": True}],
        ),
        P,
        "p1",
        NOW,
    )
    ledger.plan(plan_table("other", "p1", [{"customerId": "a", "channel": "push"}]), "other", "p1", NOW)
    assert claim(ledger, key("a"), "t") and ledger.mark_sent(key("a"), "t", "m", NOW)
    assert ledger.suppress(None, key("b"), "converted", NOW)
    assert ledger.counts(P) == {
        (P, "email", "sent", None): 1,
        (P, "email", "suppressed", "converted"): 1,
        (P, "email", "planned", None): 1,
        (P, "sms", "suppressed", "held_out"): 1,
    }
    assert ledger.counts() == {**ledger.counts(P), ("other", "push", "planned", None): 1}
    assert ledger.counts("nothing") == {}


def test_erase_customers_removes_every_touch(ledger):
    ledger.plan(
        plan_table(
            P,
            "p1",
            [
                {"customerId": "c1", "channel": "email"},
                {"customerId": "c1", "channel": "sms"},
                {"customerId": "c2", "channel": "email"},
            ],
        ),
        P,
        "p1",
        NOW,
    )
    ledger.plan(plan_table("other", "p1", [{"customerId": "c1", "channel": "push"}]), "other", "p1", NOW)
    assert claim(ledger, key("c1"), "t") and ledger.mark_sent(key("c1"), "t", "m", NOW)
    assert claim(ledger, key("c1", "sms"), "t")
    assert ledger.erase_customers(["c1", "c1", "nobody"]) == 3
    assert ledger.get(key("c1")) is None and ledger.get(key("c1", "sms")) is None
    assert not ledger.mark_sent(key("c1", "sms"), "t", "m", NOW)  # a run holding its claim marks nothing
    assert contacts(ledger, ["c1"], 0) == []
    assert ledger.counts() == {(P, "email", "planned", None): 1}
    assert ledger.erase_customer("c2") == 1 and ledger.erase_customers([]) == 0


def test_partition_subjects_and_suppress_planned(ledger):
    """The cart expiry's two operations: the partitions of a key range (one per cart), and the touches still planned
    in some partitions suppressed with a reason; a claimed or sent touch, and other partitions, are left."""
    old, new = "2026-08-01T10:00:00Z~cart-1", "2026-08-08T10:00:00Z~cart-2"
    for part, cust in ((old, "c1"), (new, "c2")):
        rows = [{"customerId": cust, "subjectId": part[-6:], "channel": ch} for ch in ("email", "sms", "push")]
        ledger.plan(plan_table(P, part, rows), P, part, NOW)
    ledger.plan(plan_table("other", old, [{"customerId": "z", "channel": "sms"}]), "other", old, NOW)
    k = {ch: f"{P}#c1#cart-1#t1#{ch}" for ch in ("email", "sms", "push")}
    assert claim(ledger, k["email"], "tok") and ledger.mark_sent(k["email"], "tok", "m1", NOW)
    assert claim(ledger, k["push"], "tok2")  # in flight: left as it is
    assert ledger.partition_subjects(P, "2026-07-01T00:00:00Z~", "2026-08-08T10:00:00Z~") == {old: ("c1", "cart-1")}
    assert ledger.partition_subjects(P, "2026-07-01", "2026-09-01") == {old: ("c1", "cart-1"), new: ("c2", "cart-2")}
    assert ledger.partition_subjects(P, "2026-09-01", "2026-07-01") == {}
    assert ledger.suppress_planned(P, [old, old, "nothing"], "expired", NOW + 5) == 1
    assert [(ledger.get(k[ch]).state, ledger.get(k[ch]).reason) for ch in ("email", "sms", "push")] == [
        ("sent", None),
        ("suppressed", "expired"),
        ("sending", None),
    ]
    assert ledger.suppress_planned(P, [old], "expired", NOW + 6) == 0  # idempotent
    assert ledger.suppress_planned(P, [], "expired", NOW) == 0
    assert ledger.due_summary(P, NOW)[0] == 3  # the new cart's touches are still due
    assert ledger.get("other#z#s-z#t1#sms").state == "planned"


@pytest.mark.parametrize("earlier", [0, 1], ids=["first-contact", "contacted-before"])
@pytest.mark.parametrize("case", ["same_touch", "same_customer_over_cap"])
def test_two_processes_claim_once_and_keep_the_cap(store, case, earlier):
    """A and B load contact pressure for the same customer at once, then both claim: exactly one wins.  SQLite
    serialises them (B's transaction waits for A's commit and sees its claim); DynamoDB lets both read and fails
    B's claim because A's claim moved the customer's contact version (created it, for a first contact)."""
    first = store()
    first.plan(
        plan_table(P, "p1", [{"customerId": "c1", "channel": ch} for ch in ("sms", "push", "email")]), P, "p1", NOW
    )
    if earlier:  # an earlier message this week: the customer's contact record exists
        assert claim(first, key("c1"), "earlier", NOW - 3_600) and first.mark_sent(key("c1"), "earlier", "m", NOW)
    policy = PressurePolicy(global_cap=earlier + 1, quiet_start=dtime(0, 0), quiet_end=dtime(0, 0))
    touches = {"A": key("c1", "sms"), "B": key("c1", "sms" if case == "same_touch" else "push")}
    a_loaded, b_loaded, a_done = threading.Event(), threading.Event(), threading.Event()
    results: dict[str, bool] = {}

    def process(name: str, before: threading.Event | None, wait: threading.Event, loaded: threading.Event) -> None:
        led = store()
        if before is not None:
            before.wait(5)
        row = led.get(touches[name])
        with led.transaction() as conn:
            pressure = PressureState.load(led, conn, policy, NOW, [row.touch_dict()], {"c1": contact("c1")})
            loaded.set()
            wait.wait(0.5 if name == "A" else 5)  # SQLite: B cannot load until A commits, so A goes on alone
            allowed = pressure.check(row.touch_dict(), contact("c1")).action == "allow"
            results[name] = allowed and led.claim(conn, row.touch_key, name, NOW)
        if name == "A":
            a_done.set()

    threads = [
        threading.Thread(target=process, args=("A", None, b_loaded, a_loaded)),
        threading.Thread(target=process, args=("B", a_loaded, a_done, b_loaded)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == {"A": True, "B": False}
    assert first.get(touches["A"]).claim_token == "A"
    assert contacts(first, ["c1"], NOW - 60) == [("c1", P, "s-c1", "sms", NOW)]
    if case == "same_customer_over_cap":
        assert first.get(touches["B"]).state == "planned"  # left for the next run to re-evaluate


def outbox_rows(tmp_path, channel: str) -> list[tuple]:
    with sqlite3.connect(tmp_path / "outbox" / f"{channel}.sqlite") as c:
        return c.execute("SELECT idempotency_key, received FROM messages").fetchall()


def test_engine_delivers_once_and_keeps_the_global_cap_across_runs(store, tmp_path):
    custs = [f"c{i:03d}" for i in range(12)]
    people = {c: contact(c) for c in custs}
    policy = PressurePolicy(global_cap=3, quiet_start=dtime(0, 0), quiet_end=dtime(0, 0))
    channels = {
        "sms": OutboxSmsChannel(root=str(tmp_path / "outbox")),
        "push": OutboxPushChannel(root=str(tmp_path / "outbox")),
    }

    def engine() -> DeliveryEngine:  # each run its own ledger handle: another run worker
        return DeliveryEngine(
            store(),
            channels,
            FakeCustomerState(people),
            FakeRenderer(),
            policy,
            EngineConfig(page_size=5, mark_batch=7, inline_backoff_s=0.001),
        )

    ledger = store()
    ledger.plan(
        plan_table(P, "p1", [{"customerId": c, "channel": ch, "touchId": ch} for c in custs for ch in ("sms", "push")]),
        P,
        "p1",
        NOW,
    )
    assert engine().run([P], NOW).by_channel() == {"sms": {"sent": 12}, "push": {"sent": 12}}
    assert engine().run([P], NOW + 10).total() == 0  # a second run finds nothing due
    # The next partition asks for two more touches each: the global cap (3 in 7 days) lets one through.
    ledger.plan(
        plan_table(
            P,
            "p2",
            [
                {"customerId": c, "channel": ch, "touchId": f"{ch}-2", "dueAt": 2_000}
                for c in custs
                for ch in ("sms", "push")
            ],
        ),
        P,
        "p2",
        NOW,
    )
    stats = engine().run([P], NOW + 60)
    assert stats.total("sent") == 12 and stats.counts[("sms", "suppressed", "global_cap")] == 12
    assert engine().run([P], NOW + 70).total() == 0
    sms, push = outbox_rows(tmp_path, "sms"), outbox_rows(tmp_path, "push")
    assert (len(sms), len(push)) == (12, 24) and {n for _, n in sms + push} == {1}  # every message once
    assert {(ch, st, r): n for (_, ch, st, r), n in ledger.counts().items()} == {
        ("sms", "sent", None): 12,
        ("push", "sent", None): 24,
        ("sms", "suppressed", "global_cap"): 12,
    }
    with ledger.transaction() as conn:
        seen = ledger.contacts_since(conn, custs, NOW - 86_400)
    assert len(seen) == 36 and set(Counter(c for c, *_ in seen).values()) == {3}


def test_engine_recovers_an_in_doubt_touch_once(store, tmp_path):
    ledger = store()
    ledger.plan(plan_table(P, "p1", [{"customerId": c, "channel": "sms"} for c in ("a", "b")]), P, "p1", NOW)
    assert claim(ledger, key("a", "sms"), "dead-run", NOW - 3_600)  # its process died before sending
    engine = DeliveryEngine(
        store(),
        {"sms": OutboxSmsChannel(root=str(tmp_path / "outbox"))},
        FakeCustomerState({c: contact(c) for c in ("a", "b")}),
        FakeRenderer(),
        NO_QUIET,
        EngineConfig(inline_backoff_s=0.001),
    )
    stats = engine.run([P], NOW)
    assert stats.recovered == 1 and stats.total("sent") == 2
    assert ledger.get(key("a", "sms")).reason == "recovered:resent" and len(outbox_rows(tmp_path, "sms")) == 2
    assert engine.run([P], NOW + 3_600).total() == 0


def test_each_resource_opens_its_backend(tmp_path, moto_endpoint):
    from resources.delivery_ledger.resource import (
        DeliveryLedgerResource,
        DynamoDbDeliveryLedgerResource,
        SqliteDeliveryLedgerResource,
    )

    local = SqliteDeliveryLedgerResource(path=str(tmp_path / "d.sqlite"))
    assert isinstance(local, DeliveryLedgerResource)
    assert type(local.ledger()) is DeliveryLedger and local.ledger().path == str(tmp_path / "d.sqlite")
    table = f"delivery-{uuid.uuid4().hex[:12]}"
    prod = DynamoDbDeliveryLedgerResource(table_name=table, region_name="us-east-1", endpoint_url=moto_endpoint)
    assert isinstance(prod, DeliveryLedgerResource)
    led = prod.ledger()
    assert isinstance(led, DynamoDbDeliveryLedger) and led.table_name == table
    prod.create_table()
    led.plan(plan_table(P, "p1", [{"customerId": "a", "channel": "sms", "dueAt": 7}]), P, "p1", NOW)
    assert prod.ledger().due_summary(P, NOW) == (1, 7)
