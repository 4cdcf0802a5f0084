"""The abandoned-cart decision path on a small generated warehouse built by dbt: the spec's filter chain, de-duplication
under repeated and shuffled delivery, one event at a time = one batch, the discount rule, touch timing, a purchase
that turns a later touch `converted`, and the Lambda handler (EventBridge event and SQS batch)."""

from __future__ import annotations

import json
import random
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_assets.assets.dbt import build_dbt_assets
from engage_assets.demo.datagen import generate
from engage_assets.domain.config import DiscountStrategy, ReactiveProgram, load_program
from engage_assets.domain.events import ParsedEvent, parse_event
from engage_assets.domain.models import ModelRegistry
from engage_assets.domain.offer_decision import segment_index
from engage_assets.reactive import DecisionParts, decide, train_purchase_intent
from engage_assets.reactive.context import CARTS_FROM, CUSTOMERS_FROM
from engage_assets.reactive.handler import Handler, RetryLater, default_handler, handle
from resources.cart_state.base import CartConversions, CartPurchase, StockChange
from resources.cart_state.dynamodb import DynamoDbCartState
from resources.cart_state.sqlite import SqliteCartState
from resources.customer_state import CustomerState
from resources.dbt import dbt_resource
from resources.dedup.dynamodb import DynamoDbDedupStore
from resources.dedup.sqlite import SqliteDedupStore
from resources.delivery_ledger.sqlite import DeliveryLedger
from resources.scoring.local import LocalScoringResource
from resources.store.sqlite import SqliteCandidateStore
from resources.warehouse.duckdb import DuckDBWarehouse

CART_YAML = Path(__file__).parent / "fixtures" / "abandoned-cart-recovery.yaml"
PROGRAM = load_program(CART_YAML)
assert isinstance(PROGRAM, ReactiveProgram)
PID = PROGRAM.programId


# ---- the warehouse, the model, the people ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """A scale-0.002 warehouse built by the dbt assets through Dagster (as tests/test_dbt.py builds it)."""
    path = tmp_path_factory.mktemp("cart_wh") / "warehouse.duckdb"
    generate(path, scale=0.002)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENGAGE_WAREHOUSE_PATH", str(path))
        mp.setenv("DBT_TARGET_PATH", str(path.parent / "dbt_target"))
        result = dg.materialize([build_dbt_assets()], resources={"dbt": dbt_resource("local")}, raise_on_error=False)
    assert result.success
    return path


@pytest.fixture(scope="module")
def model_root(warehouse, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    train_purchase_intent(PROGRAM, DuckDBWarehouse(path=str(warehouse)), ModelRegistry(root))
    return root


@pytest.fixture(scope="module")
def people(warehouse) -> dict:
    """Customers by kind, products in stock, and a clock just after the warehouse's data."""
    base = """SELECT c.customer_id FROM marts.customers c
              JOIN intermediate.int_customer_purchase_features f USING (customer_id)
              WHERE {} ORDER BY c.customer_id LIMIT {}"""
    good = "c.account_status = 'active' AND NOT c.marketing_opt_out AND f.payment_method_on_file"
    with duckdb.connect(str(warehouse), read_only=True) as con:

        def ids(where: str, n: int = 1) -> list[str]:
            return [r[0] for r in con.execute(base.format(where, n)).fetchall()]

        latest = con.execute("SELECT max(updated_at) FROM staging.stg_inventory").fetchone()[0]
        return {
            "good": ids(good + " AND c.email_opt_in AND c.sms_opt_in AND c.push_opt_in", 12),
            "opted_out": ids("c.account_status = 'active' AND c.marketing_opt_out AND f.payment_method_on_file")[0],
            "no_payment": ids(
                "c.account_status = 'active' AND NOT c.marketing_opt_out AND NOT f.payment_method_on_file"
            )[0],
            "suspended": ids("c.account_status = 'suspended' AND f.payment_method_on_file")[0],
            "products": [
                r[0]
                for r in con.execute(
                    "SELECT product_id FROM staging.stg_inventory WHERE in_stock ORDER BY product_id LIMIT 5"
                ).fetchall()
            ],
            "now": (latest.replace(tzinfo=UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0),
        }


def make_parts(tmp: Path, warehouse: Path, model_root: Path) -> DecisionParts:
    tmp.mkdir(parents=True, exist_ok=True)
    registry = ModelRegistry(model_root)
    ref = registry.current(PID, PROGRAM.scoringModels[0].modelId)
    assert ref is not None
    return DecisionParts(
        warehouse=DuckDBWarehouse(path=str(warehouse)),
        scoring=LocalScoringResource(),
        model=ref,
        store=SqliteCandidateStore(path=str(tmp / "store.sqlite")),
        ledger=DeliveryLedger(tmp / "delivery.sqlite"),
        dedup=SqliteDedupStore(path=str(tmp / "reactive.sqlite")),
        cart_state=SqliteCartState(path=str(tmp / "reactive.sqlite")),
    )


@pytest.fixture
def parts(tmp_path, warehouse, model_root) -> DecisionParts:
    return make_parts(tmp_path / "parts", warehouse, model_root)


# ---- events --------------------------------------------------------------------------------------------------------


def envelope(detail_type: str, detail: dict, event_id: str, at: datetime) -> dict:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": detail_type,
        "source": "ecommerce.cart",
        "account": "123456789012",
        "time": at.isoformat(),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def parsed(raw: dict) -> ParsedEvent:
    event = parse_event(raw)
    assert isinstance(event, ParsedEvent), event
    return event


def abandoned(customer: str, cart: str, at: datetime, value: float = 150.0, items=None, event_id=None) -> ParsedEvent:
    items = items if items is not None else [("P00000", None)]
    lines = [
        {"id": pid, "name": f"item {pid}", "price": value / len(items), **({} if s is None else {"inStock": s})}
        for pid, s in items
    ]
    detail = {
        "customerId": customer,
        "cartId": cart,
        "cartValue": value,
        "currency": "USD",
        "itemCount": len(lines),
        "items": lines,
        "abandonmentReason": "session_timeout",
        "timestamp": at.isoformat(),
    }
    return parsed(envelope("CartAbandoned", detail, event_id or f"ev-{cart}", at))


def purchased(customer: str, cart: str, at: datetime) -> ParsedEvent:
    detail = {
        "customerId": customer,
        "cartId": cart,
        "orderId": f"O-{cart}",
        "value": 150.0,
        "timestamp": at.isoformat(),
    }
    return parsed(envelope("CartPurchased", detail, f"buy-{cart}", at))


def stock(product: str, in_stock: bool, at: datetime) -> ParsedEvent:
    detail = {"productId": product, "inStock": in_stock, "timestamp": at.isoformat()}
    return parsed(envelope("InventoryChanged", detail, f"inv-{product}-{at.timestamp():.0f}", at))


def touches(ledger: DeliveryLedger) -> list[tuple]:
    with sqlite3.connect(ledger.path) as con:
        return con.execute(
            "SELECT touch_key, partition_key, customer_id, subject_id, channel, due_at, expires_at, state, reason,"
            " payload FROM touches ORDER BY touch_key"
        ).fetchall()


def candidates(store: SqliteCandidateStore, now: datetime) -> list[dict]:
    with sqlite3.connect(store.path) as con:
        customers = [r[0] for r in con.execute("SELECT customer_id FROM candidates ORDER BY customer_id")]
    return [c for cid in customers for c in store.customer_candidates(cid, now=now.timestamp())]


# ---- the filter chain ----------------------------------------------------------------------------------------------


def send_two_recovery_messages(parts: DecisionParts, customer: str, now: datetime) -> None:
    """The customer's earlier cart, decided two days ago, its e-mail and SMS sent since."""
    earlier = now - timedelta(days=2)
    decide(PROGRAM, [abandoned(customer, f"old-{customer}", earlier - timedelta(hours=1))], parts, earlier)
    rows = [t for t in touches(parts.ledger) if t[2] == customer and t[4] in ("email", "sms")]
    assert len(rows) == 2
    for key, *_ in rows:
        with parts.ledger.transaction() as conn:
            assert parts.ledger.claim(conn, key, "tok", int(earlier.timestamp()))
        assert parts.ledger.mark_sent(key, "tok", "provider-1", int(earlier.timestamp()))


def test_the_spec_filter_chain_removes_each_kind_of_cart(parts, people):
    now = people["now"]
    at = now - timedelta(minutes=30)
    good, capped, oos, oos_event = people["good"][:4]
    send_two_recovery_messages(parts, capped, now)
    events = [
        abandoned(good, "cart-good", at),
        abandoned(good, "cart-small", at, value=30.0),
        abandoned("C99999999", "cart-stranger", at),
        abandoned(people["opted_out"], "cart-opted-out", at),
        abandoned(capped, "cart-capped", at),
        abandoned(oos, "cart-oos", at, items=[("P00000", None), ("P00001", False)]),
        stock("P00002", False, at + timedelta(minutes=1)),
        abandoned(oos_event, "cart-oos-event", at, items=[("P00002", True)]),
        abandoned(people["no_payment"], "cart-no-payment", at),
        abandoned(people["suspended"], "cart-suspended", at),
    ]
    result = decide(PROGRAM, events, parts, now)

    by_cart = {r["subject_id"]: r["filter_id"] for r in result.rejected}
    assert by_cart == {
        "cart-small": "cart-value",
        "cart-opted-out": "eligibility",
        "cart-capped": "frequency-cap",
        "cart-oos": "inventory",
        "cart-oos-event": "inventory",
        "cart-no-payment": "trust",
        "cart-suspended": "trust",
    }
    assert dict(result.removed) == {
        "marketplaces": 0,
        "trust": 2,
        "cart-value": 1,
        "eligibility": 1,
        "frequency-cap": 1,
        "inventory": 2,
    }
    assert "payment method" in result.reasons["trust"] and "50" in result.reasons["cart-value"]
    assert [(q.event_id, q.reason) for q in result.quarantined] == [("ev-cart-stranger", "unknown_customer")]
    assert result.stock_changes_recorded == 1
    assert [c["subjectId"] for c in result.candidates] == ["cart-good"]
    assert result.stages["claimed"] == 9 and result.stages["known_customer"] == 8 and result.eligible == 1
    # the same customer's small cart was removed, the good one stored with its three touches
    assert parts.store.get(good, PID, now=now.timestamp())["subjectId"] == "cart-good"
    assert {t[4] for t in touches(parts.ledger) if t[3] == "cart-good"} == {"email", "sms", "push"}


def test_an_expression_filter_decides_carts_over_the_columns_the_config_checks(parts, people, monkeypatch):
    """#12 item 2 on the event path: an `expression` rule in the cart program's chain removes its carts with its own
    reason and count, and the event batch holds exactly the columns (and types) the config checks expressions
    against at load (`domain.source_columns.EVENT_BATCH_COLUMN_TYPES`)."""
    import yaml

    from engage_assets.domain.config import validate_program
    from engage_assets.domain.source_columns import EVENT_BATCH_COLUMN_TYPES
    from engage_assets.domain.sources import check_schema
    from engage_assets.reactive import decision

    raw = yaml.safe_load(CART_YAML.read_text())
    raw["filterChain"].append(
        {
            "filterId": "one-item-carts",
            "type": "business-rule",
            "rule": "expression",
            "order": 6,
            "parameters": {"expression": "item_count = 1 AND cart_value < 1000", "reason": "big carts go to sales"},
        }
    )
    program = validate_program(raw)
    seen: list = []
    real = decision.apply_filter_chain
    monkeypatch.setattr(decision, "apply_filter_chain", lambda p, t: seen.append(t.schema) or real(p, t))
    now, (one, two) = people["now"], people["good"][4:6]
    at = now - timedelta(minutes=30)
    in_stock = [(pid, True) for pid in people["products"][:2]]
    result = decide(
        program, [abandoned(one, "cart-one", at), abandoned(two, "cart-two", at, items=in_stock)], parts, now
    )
    assert [(r["subject_id"], r["filter_id"], r["reason"]) for r in result.rejected] == [
        ("cart-two", "one-item-carts", "big carts go to sales")
    ]
    assert result.removed["one-item-carts"] == 1 and [c["subjectId"] for c in result.candidates] == ["cart-one"]
    assert set(seen[0].names) == set(EVENT_BATCH_COLUMN_TYPES)
    check_schema(seen[0], EVENT_BATCH_COLUMN_TYPES, "the cart batch")
    raw["filterChain"][-1]["parameters"]["expression"] = "order_value_usd > 1"
    with pytest.raises(ValueError, match="unknown column 'order_value_usd'"):
        validate_program(raw)


def test_a_customer_outside_the_programs_marketplaces_is_never_a_candidate(parts, people, warehouse):
    now = people["now"]
    customer = people["good"][0]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (market,) = con.execute("SELECT marketplace FROM marts.customers WHERE customer_id = ?", [customer]).fetchone()
    program = PROGRAM.model_copy(update={"marketplaces": [m for m in PROGRAM.marketplaces if m != market]})
    result = decide(program, [abandoned(customer, "cart-elsewhere", now - timedelta(minutes=30))], parts, now)
    assert result.removed["marketplaces"] == 1 and result.candidates == []
    (rejected,) = result.rejected
    assert rejected["filter_id"] == "marketplaces" and f"marketplace {market} is not one of" in rejected["reason"]
    assert parts.store.get(customer, PID, now=now.timestamp()) is None


def test_an_unknown_customer_is_quarantined_again_on_replay(parts, people):
    event = abandoned("C99999999", "cart-stranger", people["now"] - timedelta(minutes=5))
    for _ in range(2):
        result = decide(PROGRAM, [event], parts, people["now"])
        assert [q.reason for q in result.quarantined] == ["unknown_customer"] and result.duplicates == 0


def test_a_cart_purchased_before_its_abandonment_is_decided_is_not_a_candidate(parts, people):
    customer, now = people["good"][0], people["now"]
    decide(PROGRAM, [purchased(customer, "cart-bought", now - timedelta(minutes=10))], parts, now)
    result = decide(PROGRAM, [abandoned(customer, "cart-bought", now - timedelta(minutes=40))], parts, now)
    assert [(r["subject_id"], r["filter_id"]) for r in result.rejected] == [("cart-bought", "eligibility")]
    assert "purchased" in result.reasons["eligibility"]


# ---- de-duplication and batch = one at a time ----------------------------------------------------------------------


def good_events(people: dict, n: int = 8) -> list[ParsedEvent]:
    now = people["now"]
    return [
        abandoned(c, f"cart-{i}", now - timedelta(minutes=5 * i + 1), value=60.0 + 40 * i)
        for i, c in enumerate(people["good"][:n])
    ]


@pytest.mark.parametrize("seed", range(4))
def test_every_event_delivered_one_to_five_times_shuffled_gives_one_candidate_and_one_sequence(
    seed, tmp_path, warehouse, model_root, people
):
    rng = random.Random(seed)
    originals = good_events(people)
    deliveries = [e for e in originals for _ in range(rng.randint(1, 5))]
    rng.shuffle(deliveries)
    parts = make_parts(tmp_path / "p", warehouse, model_root)
    duplicates, start = 0, 0
    while start < len(deliveries):  # micro-batches of random sizes, single events included
        size = rng.randint(1, 6)
        duplicates += decide(PROGRAM, deliveries[start : start + size], parts, people["now"]).duplicates
        start += size
    stored = candidates(parts.store, people["now"])
    assert sorted(c["subjectId"] for c in stored) == sorted(e.detail.cartId for e in originals)
    rows = touches(parts.ledger)
    assert len(rows) == len({r[0] for r in rows}) == 3 * len(originals)
    assert duplicates == len(deliveries) - len(originals)


def test_one_event_at_a_time_and_the_whole_batch_leave_the_same_state(tmp_path, warehouse, model_root, people):
    now = people["now"]
    events = good_events(people) + [
        abandoned(people["opted_out"], "cart-opted-out", now - timedelta(minutes=3)),
        abandoned(people["good"][0], "cart-small", now - timedelta(minutes=2), value=20.0),
        abandoned("C99999999", "cart-stranger", now - timedelta(minutes=1)),
    ]
    events += events[:3]  # redelivered copies
    one, batch = (
        make_parts(tmp_path / "one", warehouse, model_root),
        make_parts(tmp_path / "batch", warehouse, model_root),
    )
    singles = [decide(PROGRAM, [e], one, now) for e in events]
    whole = decide(PROGRAM, events, batch, now)

    assert candidates(one.store, now) == candidates(batch.store, now)
    assert touches(one.ledger) == touches(batch.ledger)
    assert sum(r.duplicates for r in singles) == whole.duplicates == 3
    for name in whole.removed:
        assert sum(r.removed.get(name, 0) for r in singles) == whole.removed[name]
    assert sorted(q.event_id for r in singles for q in r.quarantined) == [q.event_id for q in whole.quarantined]


def test_deciding_inside_a_warehouse_session_reads_snapshots_and_leaves_the_same_state(
    tmp_path, warehouse, model_root, people
):
    now = people["now"]
    events = good_events(people) + [
        abandoned(people["opted_out"], "cart-opted-out", now - timedelta(minutes=3)),
        abandoned("C99999999", "cart-stranger", now - timedelta(minutes=1)),
    ]
    plain, held = (
        make_parts(tmp_path / "plain", warehouse, model_root),
        make_parts(tmp_path / "held", warehouse, model_root),
    )
    for e in events:
        decide(PROGRAM, [e], plain, now)
    with held.warehouse.session():
        for e in events:
            decide(PROGRAM, [e], held, now)
        assert held.warehouse.session_snapshot(CARTS_FROM, 10**9) is not None  # read once, kept for the session
        assert held.warehouse.session_snapshot(CARTS_FROM, 0) is not None  # (the first answer stands)
    assert held.warehouse.session_snapshot(CARTS_FROM, 10**9) is None  # no session: no snapshot
    assert candidates(plain.store, now) == candidates(held.store, now)
    assert touches(plain.ledger) == touches(held.ledger)


def test_a_session_snapshot_is_kept_only_while_small_and_read_only(warehouse):
    wh = DuckDBWarehouse(path=str(warehouse))
    with wh.session():
        whole = wh.session_snapshot(CARTS_FROM, 10**9)
        assert (
            whole is not None
            and whole.num_rows == wh.query_arrow(f"SELECT count(*) AS n FROM ({CARTS_FROM})")[0][0].as_py()
        )
        assert wh.session_snapshot(CUSTOMERS_FROM, whole.num_rows * 0) is None  # over max_rows: the caller queries
    writable = DuckDBWarehouse(path=str(warehouse), read_only=False)
    with writable.session():  # this connection could write: nothing is kept
        assert writable.session_snapshot(CARTS_FROM, 10**9) is None


# ---- the offer and the touches ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    default=st.floats(0, 100, allow_nan=False),
    extra=st.floats(0, 100, allow_nan=False),
    scores=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=50),
)
def test_the_discount_is_never_above_max_and_grows_as_intent_falls(default, extra, scores):
    strategy = DiscountStrategy(
        defaultDiscount=default, maxDiscount=min(100.0, default + extra), dynamicDiscounting=True
    )
    segments = strategy.segments()
    idx = segment_index(np.array(scores), segments)
    assert (idx >= 0).all()
    given_pct = np.array([segments[i].discount for i in idx])
    assert (given_pct <= strategy.maxDiscount).all() and (given_pct >= strategy.defaultDiscount).all()
    order = np.argsort(scores)
    assert (np.diff(given_pct[order]) <= 0).all()  # lower intent, at least as large a discount
    assert all(
        s.discount == strategy.defaultDiscount
        for s, i in zip(scores, idx, strict=True)
        if s >= 0.5
        for s in [segments[i]]
    )


def test_stored_offers_respect_max_discount_and_the_touches_are_timed_from_the_abandonment(parts, people):
    now = people["now"]
    events = good_events(people)
    result = decide(PROGRAM, events, parts, now)
    assert len(result.candidates) == len(events)
    strategy = PROGRAM.discountStrategy
    for c in result.candidates:
        pct = c["offer"].get("discountPercent")
        assert pct is not None and strategy.defaultDiscount <= pct <= strategy.maxDiscount
        assert pct == (10 if c["score"] >= 0.5 else 15 if c["score"] >= 0.25 else 20)
        assert c["expiresAt"] == int((now + timedelta(days=7)).timestamp())
        assert c["modelVersions"] == {"purchase-intent-v4": parts.model.version}
    at = {e.detail.cartId: int(e.detail.timestamp.timestamp()) for e in events}
    delays = {"email": 3600, "sms": 24 * 3600, "push": 72 * 3600}
    rows = touches(parts.ledger)
    assert len(rows) == 3 * len(events)
    for _key, partition, _cust, cart, channel, due, _expires, state, _reason, payload in rows:
        assert due - at[cart] == delays[channel]
        assert (
            partition.startswith(datetime.fromtimestamp(at[cart], UTC).strftime("%Y-%m-%dT%H:%M:%S"))
            and cart in partition
        )
        assert state in ("planned", "suppressed")
        conditions = json.loads(json.loads(payload)["conditions"])
        assert conditions == ([] if channel == "email" else ["not_converted"])
        assert json.loads(json.loads(payload)["offer"])["discountPercent"] <= 20


def test_a_purchase_before_the_sms_makes_the_later_touches_converted(parts, people, warehouse):
    customer, now = people["good"][1], people["now"]
    at = now - timedelta(minutes=10)
    decide(PROGRAM, [abandoned(customer, "cart-r", at)], parts, now)
    rows = {t[4]: t[0] for t in touches(parts.ledger) if t[3] == "cart-r"}
    bought = decide(PROGRAM, [purchased(customer, "cart-r", at + timedelta(hours=2))], parts, now + timedelta(hours=2))
    assert bought.purchases_recorded == 1 and bought.candidates == []

    state = CustomerState(warehouse=DuckDBWarehouse(path=str(warehouse))).use_conversions(
        CartConversions(parts.cart_state)
    )
    sms, push, email = (parts.ledger.get(rows[c]).touch_dict() for c in ("sms", "push", "email"))
    send_time = now + timedelta(hours=24)
    assert state.recheck_many([sms, push, email], send_time) == ["converted", "converted", None]


# ---- the stores (SQLite and DynamoDB, one contract) ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", "dynamodb"])
def state_backends(request, tmp_path):
    """(dedup store, cart state) of one backend; DynamoDB on a moto server, both in one table."""
    if request.param == "sqlite":
        path = str(tmp_path / "reactive.sqlite")
        return SqliteDedupStore(path=path, lease_s=60), SqliteCartState(path=path)
    endpoint = request.getfixturevalue("moto_endpoint")
    table = f"reactive-{tmp_path.name}"[:200]
    dedup = DynamoDbDedupStore(table_name=table, region_name="us-east-1", endpoint_url=endpoint, lease_s=60)
    dedup.create_table()
    return dedup, DynamoDbCartState(table_name=table, region_name="us-east-1", endpoint_url=endpoint)


def test_dedup_claims_once_until_released_expired_or_stale(state_backends):
    store, _ = state_backends
    assert store.claim(["a", "b", "a"], ttl_s=100, now=0) == {"a", "b"}
    assert store.claim(["a", "c"], ttl_s=100, now=1) == {"c"}
    assert store.in_flight(["a", "b", "c"], now=2) == {"a", "b", "c"}
    store.complete(["a"], now=2)
    store.release(["b"])
    assert store.in_flight(["a", "b", "c"], now=3) == {"c"}
    assert store.claim(["a", "b"], ttl_s=100, now=4) == {"b"}
    assert store.claim(["c"], ttl_s=100, now=62) == {"c"}  # c's owner died: its lease ran out
    assert store.claim(["a"], ttl_s=100, now=101) == {"a"}  # a's claim expired


def test_concurrent_claims_of_one_key_have_one_winner(state_backends):
    store, _ = state_backends
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda _: store.claim(["k"], ttl_s=100, now=10), range(16)))
    assert sum(len(w) for w in won) == 1


def test_cart_state_keeps_the_newest_stock_and_the_first_purchase(state_backends):
    _, cart_state = state_backends
    cart_state.record_stock([StockChange("P1", False, 10), StockChange("P1", True, 5), StockChange("P2", True, 1)])
    assert {p: s.in_stock for p, s in cart_state.stock(["P1", "P2", "P3"]).items()} == {"P1": False, "P2": True}
    cart_state.record_stock([StockChange("P1", True, 20)])
    assert cart_state.stock(["P1"])["P1"].in_stock is True
    first = CartPurchase("cart-1", "C1", "O1", 100.0)
    assert cart_state.record_purchases([first, CartPurchase("cart-1", "C1", "O2", 200.0)]) == 1
    cart_state.record_purchases([CartPurchase("cart-2", "C2", "O3", 50.0)])
    assert cart_state.purchased_carts(["cart-1", "cart-2", "cart-3"]) == {"cart-1": 100.0, "cart-2": 50.0}
    assert cart_state.purchasers_since(["C1", "C2", "C3"], since=100.0) == {"C1"}
    converted = CartConversions(cart_state).converted_since(["C1", "C2"], datetime(1970, 1, 1).date())
    assert converted == {"C1", "C2"}


# ---- the Lambda handler -------------------------------------------------------------------------------------------


def sqs(records: list[tuple[str, str]]) -> dict:
    return {"Records": [{"messageId": mid, "body": body, "eventSource": "aws:sqs"} for mid, body in records]}


def test_an_sqs_batch_reports_only_unparseable_and_in_flight_messages(parts, people):
    now = people["now"]
    first, second, held = good_events(people, 3)
    held_key = f"{held.detail.customerId}:{held.detail.cartId}:{PID}"
    parts.dedup.claim([held_key], ttl_s=3600, now=now.timestamp())  # another consumer is deciding it
    handler = Handler([(PROGRAM, parts)], clock=lambda: now)
    answer = handler.handle(
        sqs(
            [
                ("m1", first.to_json()),
                ("m2", first.to_json()),
                ("m3", "{not json"),
                ("m4", second.to_json()),
                ("m5", held.to_json()),
            ]
        )
    )
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m3"}, {"itemIdentifier": "m5"}]
    summary = answer["programs"][PID]
    assert summary["candidates"] == 2 and summary["duplicates"] == 1 and summary["in_flight"] == 1

    single = handler.handle(first.as_event())
    assert single["status"] == "decided" and single["programs"][PID]["duplicates"] == 1
    assert handler.handle(b"[1, 2]")["reason"] == "not_an_object"
    with pytest.raises(RetryLater):
        handler.handle(held.to_json())


def test_the_module_handler_builds_its_parts_from_the_environment(tmp_path, monkeypatch, warehouse, people):
    configs = tmp_path / "programs"
    configs.mkdir()
    (configs / "abandoned-cart-recovery.yaml").write_text(CART_YAML.read_text())
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ENGAGE_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("ENGAGE_PROGRAM_CONFIGS", str(configs))
    train_purchase_intent(PROGRAM, DuckDBWarehouse(path=str(warehouse)), ModelRegistry(tmp_path / "home" / "models"))
    default_handler.cache_clear()
    try:
        event = good_events(people, 1)[0]
        answer = handle(sqs([("m1", event.to_json())]))
        assert answer["batchItemFailures"] == [] and answer["programs"][PID]["candidates"] == 1
        assert SqliteCandidateStore(path=str(tmp_path / "home" / "store.sqlite")).count(PID) == 1
    finally:
        default_handler.cache_clear()


def test_production_parts_are_the_shared_dynamodb_and_sagemaker_ones(tmp_path, monkeypatch):
    from engage_assets.settings import PROD_REQUIRED, get_settings
    from resources.by_env import reactive_resources
    from resources.scoring.sagemaker import SageMakerScoringResource

    monkeypatch.setenv("ENGAGE_ENV", "prod")
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    for name, var in PROD_REQUIRED.items():
        monkeypatch.setenv(var, "us-east-1" if name == "aws_region" else f"name-{name}")
    with pytest.raises(ValueError, match="ENGAGE_REACTIVE_TABLE"):
        reactive_resources(get_settings())
    monkeypatch.setenv("ENGAGE_REACTIVE_TABLE", "engage-reactive")
    res = reactive_resources(get_settings())
    assert isinstance(res["dedup"], DynamoDbDedupStore) and isinstance(res["cart_state"], DynamoDbCartState)
    assert res["dedup"].table_name == res["cart_state"].table_name == "engage-reactive"
    assert isinstance(res["scoring"], SageMakerScoringResource)
