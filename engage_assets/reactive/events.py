"""A micro-batch of parsed cart events as the decision path reads it: state changes, and the abandoned carts as one
Arrow table, de-duplicated by the program's key.

Pure (no I/O).  Every abandoned cart gets two keys from its event:
- `dedup_key`: the config's `deduplication.keyFormat` (`{customerId}:{cartId}:{programId}`), claimed once per
  `ttlDays` (`resources.dedup`);
- `partition_key`: `<abandoned at, UTC, to the second>Z~<cart id>`, the candidate's and its touches' partition in the
  candidate store and the delivery ledger.  One partition per cart makes every write of an event idempotent and
  independent of the other events of its batch (the store's and the ledger's "replace the partition" would
  otherwise drop the hour's other carts), its first ten characters are the day (`conditions.plan_date`), and the
  store's "newer partition wins" keeps a customer's most recently abandoned cart.
Copies of one key within a batch keep the earliest abandonment (ties: the smallest event id), whatever the order
they arrived in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from engage_assets.domain.config import ReactiveProgram
from engage_assets.domain.events import CartAbandoned, CartPurchased, InventoryChanged, ParsedEvent
from resources.cart_state.base import CartPurchase, StockChange

ABANDONED_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("customer_id", pa.string()),
        ("cart_id", pa.string()),
        ("cart_value_local", pa.float64()),
        ("currency", pa.string()),
        ("item_count", pa.int64()),
        ("abandonment_reason", pa.string()),
        ("abandoned_at", pa.timestamp("us", tz="UTC")),
        ("dedup_key", pa.string()),
        ("partition_key", pa.string()),
    ]
)
ITEM_SCHEMA = pa.schema(
    [
        ("cart_id", pa.string()),
        ("product_id", pa.string()),
        ("in_stock", pa.bool_()),  # the event's own word on the item, if it carried one
        ("observed_at", pa.float64()),  # epoch seconds of that word (the abandonment)
    ]
)


def dedup_key(program: ReactiveProgram, customer_id: str, cart_id: str) -> str:
    """The event's de-duplication key, from the config's `keyFormat`."""
    return program.deduplication.keyFormat.format(
        customerId=customer_id, cartId=cart_id, subjectId=cart_id, programId=program.programId
    )


def partition_key(abandoned_at: datetime, cart_id: str) -> str:
    """The cart's partition: abandonment time (UTC, seconds) and cart id (`#` is reserved by the stores)."""
    # isoformat, not strftime: glibc's strftime may re-read the time zone file on every call (0.1 ms each).
    at = abandoned_at.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()
    return f"{at}Z~{cart_id.replace('#', '%23')}"


@dataclass
class EventBatch:
    """One micro-batch, split: the unique abandoned carts (Arrow), their items, the state changes, the copies."""

    abandoned: pa.Table  # ABANDONED_SCHEMA, one row per dedup key
    items: pa.Table  # ITEM_SCHEMA, the unique carts' lines
    purchases: list[CartPurchase] = field(default_factory=list)
    stock: list[StockChange] = field(default_factory=list)
    events_by_key: dict[str, list[str]] = field(default_factory=dict)  # dedup key -> every event id carrying it
    received: int = 0

    @property
    def copies(self) -> int:
        """Abandonment events beyond the first of their key within the batch."""
        return sum(len(ids) - 1 for ids in self.events_by_key.values())


def _abandoned_row(program: ReactiveProgram, event: ParsedEvent, d: CartAbandoned) -> dict:
    """One abandoned cart as a row of ABANDONED_SCHEMA."""
    return {
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


def split_events(program: ReactiveProgram, events: Sequence[ParsedEvent]) -> EventBatch:
    """The batch split by kind; abandoned carts de-duplicated by key (module docstring)."""
    chosen: dict[str, tuple[dict, CartAbandoned]] = {}
    by_key: dict[str, list[str]] = {}
    purchases, stock = [], []
    for event in events:
        d = event.detail
        if isinstance(d, CartPurchased):
            purchases.append(CartPurchase(d.cartId, d.customerId, d.orderId, d.timestamp.timestamp()))
        elif isinstance(d, InventoryChanged):
            stock.append(StockChange(d.productId, d.inStock, d.timestamp.timestamp()))
        elif isinstance(d, CartAbandoned):
            row = _abandoned_row(program, event, d)
            by_key.setdefault(row["dedup_key"], []).append(row["event_id"])
            best = chosen.get(row["dedup_key"])
            if best is None or (row["abandoned_at"], row["event_id"]) < (best[0]["abandoned_at"], best[0]["event_id"]):
                chosen[row["dedup_key"]] = (row, d)
    rows = sorted((r for r, _ in chosen.values()), key=lambda r: r["dedup_key"])
    items = [
        {
            "cart_id": d.cartId,
            "product_id": item.id,
            "in_stock": item.inStock,
            "observed_at": d.timestamp.timestamp(),
        }
        for _, d in sorted(chosen.values(), key=lambda rd: rd[0]["dedup_key"])
        for item in d.items
    ]
    return EventBatch(
        abandoned=pa.Table.from_pylist(rows, schema=ABANDONED_SCHEMA),
        items=pa.Table.from_pylist(items, schema=ITEM_SCHEMA),
        purchases=purchases,
        stock=stock,
        events_by_key=by_key,
        received=len(events),
    )
