"""`split_events` (one pass, the chosen abandonments built column by column) gives what the per-event rows gave:
the reference below is the row-at-a-time split it replaced (#10, cart_events_per_s), run on shuffled streams with
copies, ties and several time zones."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_assets.domain.config import ReactiveProgram, load_program
from engage_assets.domain.events import CartAbandoned, CartPurchased, InventoryChanged, ParsedEvent, parse_event
from engage_assets.reactive.events import ABANDONED_SCHEMA, ITEM_SCHEMA, dedup_key, partition_key, split_events

PROGRAM = load_program(Path(__file__).parent / "fixtures" / "abandoned-cart-recovery.yaml")
assert isinstance(PROGRAM, ReactiveProgram)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]


def reference_split(program: ReactiveProgram, events: list[ParsedEvent]) -> tuple[pa.Table, pa.Table, dict, list, list]:
    """The row-at-a-time split: a dict per abandonment, the earliest per key (ties: smallest event id)."""
    chosen: dict[str, tuple[dict, CartAbandoned]] = {}
    by_key: dict[str, list[str]] = {}
    purchases, stock = [], []
    for event in events:
        d = event.detail
        if isinstance(d, CartPurchased):
            purchases.append((d.cartId, d.customerId, d.orderId, d.timestamp.timestamp()))
        elif isinstance(d, InventoryChanged):
            stock.append((d.productId, d.inStock, d.timestamp.timestamp()))
        elif isinstance(d, CartAbandoned):
            row = {
                "event_id": event.envelope.id,
                "customer_id": d.customerId,
                "cart_id": d.cartId,
                "cart_value_local": float(d.cartValue),
                "currency": d.currency,
                "item_count": int(d.itemCount),
                "abandonment_reason": d.abandonmentReason,
                "abandoned_at": d.timestamp.astimezone(UTC),
                "dedup_key": dedup_key(program, d.customerId, d.cartId),
                "partition_key": partition_key(d.timestamp, d.cartId),
            }
            by_key.setdefault(row["dedup_key"], []).append(row["event_id"])
            best = chosen.get(row["dedup_key"])
            if best is None or (row["abandoned_at"], row["event_id"]) < (best[0]["abandoned_at"], best[0]["event_id"]):
                chosen[row["dedup_key"]] = (row, d)
    ordered = sorted(chosen.values(), key=lambda rd: rd[0]["dedup_key"])
    items = [
        {"cart_id": d.cartId, "product_id": i.id, "in_stock": i.inStock, "observed_at": d.timestamp.timestamp()}
        for _, d in ordered
        for i in d.items
    ]
    return (
        pa.Table.from_pylist([r for r, _ in ordered], schema=ABANDONED_SCHEMA),
        pa.Table.from_pylist(items, schema=ITEM_SCHEMA),
        by_key,
        purchases,
        stock,
    )


def _event(kind: str, detail: dict, event_id: str, at: datetime) -> ParsedEvent:
    raw = {
        "version": "0",
        "id": event_id,
        "detail-type": kind,
        "source": "shop",
        "account": "1",
        "time": at.isoformat(),
        "region": "r",
        "resources": [],
        "detail": detail,
    }
    parsed = parse_event(raw)
    assert isinstance(parsed, ParsedEvent), parsed
    return parsed


def _abandoned(customer: int, cart: int, n: int, at: datetime, items: int, currency: str) -> ParsedEvent:
    lines = [
        {"id": f"P{k}", "name": "x", "price": 10.0, **({"inStock": k % 2 == 0} if k % 3 else {})} for k in range(items)
    ]
    detail = {
        "customerId": f"C{customer}",
        "cartId": f"K{cart}",
        "cartValue": 10.0 * items + n % 7,
        "currency": currency,
        "itemCount": items,
        "items": lines,
        "abandonmentReason": None if n % 4 == 0 else "session_timeout",
        "timestamp": at.isoformat(),
    }
    return _event("CartAbandoned", detail, f"e{n:04d}", at)


events = st.lists(
    st.tuples(
        st.integers(0, 5),  # customer
        st.integers(0, 8),  # cart
        st.integers(0, 120),  # minutes after T0 (equal times: ties on the event id)
        st.sampled_from(ZONES),
        st.integers(0, 4),  # items
        st.sampled_from(["USD", "EUR"]),
        st.sampled_from(["abandon", "abandon", "abandon", "purchase", "stock"]),
    ),
    max_size=60,
)


@settings(max_examples=120, deadline=None)
@given(events, st.randoms(use_true_random=False))
def test_the_column_wise_split_is_the_per_event_split(drawn, rng: random.Random):
    batch = []
    for n, (customer, cart, minutes, zone, items, currency, kind) in enumerate(drawn):
        at = (T0 + timedelta(minutes=minutes)).astimezone(zone)
        if kind == "abandon":
            batch.append(_abandoned(customer, cart, n, at, items, currency))
        elif kind == "purchase":
            detail = {"customerId": f"C{customer}", "cartId": f"K{cart}", "orderId": "o", "value": 1.0}
            batch.append(_event("CartPurchased", detail | {"timestamp": at.isoformat()}, f"p{n}", at))
        else:
            detail = {"productId": f"P{items}", "inStock": bool(minutes % 2), "timestamp": at.isoformat()}
            batch.append(_event("InventoryChanged", detail, f"s{n}", at))
    batch += [batch[i] for i in range(0, len(batch), 3)]  # exact copies (SQS delivers at least once)
    rng.shuffle(batch)
    got = split_events(PROGRAM, batch)
    abandoned, items, by_key, purchases, stock = reference_split(PROGRAM, batch)
    assert got.abandoned.equals(abandoned)
    assert got.items.equals(items)
    assert got.events_by_key == by_key
    assert [(p.cart_id, p.customer_id, p.order_id, p.purchased_at) for p in got.purchases] == purchases
    assert [(s.product_id, s.in_stock, s.changed_at) for s in got.stock] == stock
    assert got.received == len(batch)


def test_an_empty_batch_splits_into_empty_tables():
    got = split_events(PROGRAM, [])
    assert got.abandoned.num_rows == 0 and got.abandoned.schema == ABANDONED_SCHEMA
    assert got.items.num_rows == 0 and got.items.schema == ITEM_SCHEMA


def test_load_events_and_decide_pause_the_collector_only_while_they_run(tmp_path):
    import gc

    from engage_assets.assets.reactive.decisions import load_events
    from engage_assets.reactive import DecisionParts, decide
    from resources.event_batches import BatchLine, EventBatchStore

    store = EventBatchStore(root=str(tmp_path))
    event = _abandoned(1, 1, 1, T0, 2, "USD")
    batch_id = store.write(
        PROGRAM.programId, "2024-05-01-12:00", [BatchLine("m1", event.to_json()), BatchLine("m2", "{")]
    )
    assert gc.isenabled()
    events, rejected, n = load_events(store, PROGRAM.programId, "2024-05-01-12:00", [batch_id])
    assert events == [event] and rejected == {"malformed_json": 1} and n == 1
    assert gc.isenabled()

    class Failing:  # the first store decide touches fails: the collector must be back on
        def record_purchases(self, purchases):
            assert not gc.isenabled()
            raise RuntimeError("cart state down")

    parts = DecisionParts(*([None] * 6), cart_state=Failing())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="cart state down"):
        decide(PROGRAM, events, parts, T0)
    assert gc.isenabled()
