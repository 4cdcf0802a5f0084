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


def split_events(program: ReactiveProgram, events: Sequence[ParsedEvent]) -> EventBatch:
    """The batch split by kind; abandoned carts de-duplicated by key (module docstring).  One pass over the events
    keeps each key's earliest abandonment; only those become rows, built column by column."""
    key_format, program_id = program.deduplication.keyFormat, program.programId
    chosen: dict[str, tuple[datetime, str, CartAbandoned]] = {}  # dedup key -> (abandoned at, event id, detail)
    by_key: dict[str, list[str]] = {}
    purchases, stock = [], []
    for event in events:
        d = event.detail
        if isinstance(d, CartPurchased):
            purchases.append(CartPurchase(d.cartId, d.customerId, d.orderId, d.timestamp.timestamp()))
        elif isinstance(d, InventoryChanged):
            stock.append(StockChange(d.productId, d.inStock, d.timestamp.timestamp()))
        elif isinstance(d, CartAbandoned):
            key = key_format.format(customerId=d.customerId, cartId=d.cartId, subjectId=d.cartId, programId=program_id)
            event_id, at = event.envelope.id, d.timestamp.astimezone(UTC)
            ids = by_key.get(key)
            if ids is None:
                by_key[key] = [event_id]
                chosen[key] = (at, event_id, d)
                continue
            ids.append(event_id)
            best = chosen[key]
            if (at, event_id) < (best[0], best[1]):
                chosen[key] = (at, event_id, d)
    return EventBatch(
        abandoned=_abandoned_table(chosen),
        items=_items_table(chosen),
        purchases=purchases,
        stock=stock,
        events_by_key=by_key,
        received=len(events),
    )


def _abandoned_table(chosen: dict[str, tuple[datetime, str, CartAbandoned]]) -> pa.Table:
    """The chosen abandonments as ABANDONED_SCHEMA, in dedup-key order."""
    keys = sorted(chosen)
    rows = [chosen[k] for k in keys]
    columns = {
        "event_id": [e for _, e, _ in rows],
        "customer_id": [d.customerId for _, _, d in rows],
        "cart_id": [d.cartId for _, _, d in rows],
        "cart_value_local": [float(d.cartValue) for _, _, d in rows],
        "currency": [d.currency for _, _, d in rows],
        "item_count": [int(d.itemCount) for _, _, d in rows],
        "abandonment_reason": [d.abandonmentReason for _, _, d in rows],
        "abandoned_at": [at for at, _, _ in rows],
        "dedup_key": keys,
        "partition_key": [partition_key(at, d.cartId) for at, _, d in rows],
    }
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) for f in ABANDONED_SCHEMA], schema=ABANDONED_SCHEMA)


def _items_table(chosen: dict[str, tuple[datetime, str, CartAbandoned]]) -> pa.Table:
    """The chosen carts' lines as ITEM_SCHEMA, in dedup-key order."""
    cart_ids: list[str] = []
    product_ids: list[str] = []
    in_stock: list[bool | None] = []
    observed_at: list[float] = []
    for key in sorted(chosen):
        d = chosen[key][2]
        at = d.timestamp.timestamp()
        for item in d.items:
            cart_ids.append(d.cartId)
            product_ids.append(item.id)
            in_stock.append(item.inStock)
            observed_at.append(at)
    arrays = [cart_ids, product_ids, in_stock, observed_at]
    return pa.Table.from_arrays(
        [pa.array(a, f.type) for a, f in zip(arrays, ITEM_SCHEMA, strict=True)], schema=ITEM_SCHEMA
    )
