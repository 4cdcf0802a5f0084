"""Cart state from events: purchases (`CartPurchased`) and stock changes (`InventoryChanged`), newer than the warehouse.

The reactive decision path writes here and reads here: an abandoned cart already purchased is not a candidate, and an
item an `InventoryChanged` event took out of stock fails the inventory filter before the warehouse's nightly load
knows.  The delivery engine reads purchases at send time through `CartConversions`, a `ConversionSource`
(`resources.customer_state`): a cart touch planned `onlyIfNotConverted` whose customer bought a cart since the plan
is suppressed `converted`.

Purchases are kept per cart; stock per product, the newest change winning (events arrive in any order).  A cart the
program decided is marked expired once its abandonment is older than the cart TTL (the hourly `<group>_cart_expiry`
job, `engage_assets.assets.reactive.expiry`): the first mark stands, so expiring a cart twice changes nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import dagster as dg


@dataclass(frozen=True)
class CartPurchase:
    """A cart that became an order, and when (epoch seconds)."""

    cart_id: str
    customer_id: str
    order_id: str
    purchased_at: float


@dataclass(frozen=True)
class StockChange:
    """A product's stock as of `changed_at` (epoch seconds)."""

    product_id: str
    in_stock: bool
    changed_at: float


class CartStateStore(dg.ConfigurableResource, ABC):
    """Purchases per cart and stock per product, as the events reported them."""

    @abstractmethod
    def record_purchases(self, purchases: Sequence[CartPurchase]) -> int:
        """Record purchases (a cart's first purchase stands; a repeat is a no-op); how many were new."""

    @abstractmethod
    def purchased_carts(self, cart_ids: Sequence[str]) -> dict[str, float]:
        """{cart_id: purchased_at} of the given carts that were purchased."""

    @abstractmethod
    def purchasers_since(self, customer_ids: Sequence[str], since: float) -> set[str]:
        """Which of these customers purchased a cart at or after `since` (epoch seconds)."""

    @abstractmethod
    def record_stock(self, changes: Sequence[StockChange]) -> int:
        """Record stock changes; per product the newest `changed_at` wins (an older one is ignored)."""

    @abstractmethod
    def stock(self, product_ids: Sequence[str]) -> dict[str, StockChange]:
        """The newest recorded change of each product that has one."""

    @abstractmethod
    def expire_carts(self, program_id: str, carts: Sequence[tuple[str, str]], now: float) -> list[tuple[str, str]]:
        """Mark these (customer_id, cart_id) carts of the program expired at `now` (epoch seconds); the ones newly
        marked, in order.  A cart already expired keeps its first time and is not returned (idempotent)."""

    @abstractmethod
    def expired_carts(self, program_id: str, cart_ids: Sequence[str]) -> dict[str, float]:
        """{cart_id: expired_at} of the given carts the program expired."""


class CartConversions:
    """A `ConversionSource` over cart purchases: a customer converted if they bought a cart on or after the plan's
    day.  The protocol gives a day, not an instant, and a customer, not a cart: a purchase earlier the same day, or
    of another cart, also counts (a recovery message is then the wrong thing to send anyway)."""

    def __init__(self, state: CartStateStore):
        """Answer from `state`."""
        self.state = state

    def converted_since(self, customer_ids: list[str], since: date) -> set[str]:
        """Which of these customers bought a cart on or after `since`."""
        start = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()
        return self.state.purchasers_since(customer_ids, start)
