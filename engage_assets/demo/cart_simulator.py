"""A simulator of the shop's cart events, for demos and load tests: not a producer of real traffic.

It stands in for the e-commerce site of the abandoned-cart spec: it draws real customers (`marts.customers`, or
`raw.customers` before the first dbt build) and products (`raw.inventory`, newest load) from the warehouse, read-only,
and publishes EventBridge PutEvents entries (`Source` "ecommerce.cart") whose `Detail` follows the envelope models
(`engage_assets.domain.events.envelope`):

- `CartAbandoned` (most): 1-5 distinct in-stock products, quantity 1 (85 %), 2 (12 %) or 3, prices in the customer's
  marketplace currency (the generator's list prices and rates), a reason drawn with the generator's weights
  (`engage_assets.demo.datagen.carts.REASONS`); `HIGH_VALUE_SHARE` (80 %) of the carts are worth $50 or more;
- `CartPurchased` (`Mix.purchased`): a cart abandoned earlier in the run, still open, becomes an order, so its
  sequence can end `converted`;
- `InventoryChanged` (`Mix.inventory`): an item of an open cart goes out of stock; once more than `RESTOCK_SHARE` of
  the catalogue is out, the product out longest comes back instead (so a long run keeps products to sell).

Each event's `timestamp` (and the entry's `Time`) is the simulated clock: `start` plus the event's position over the
rate, so a seed and a start give the same entries, in the same order, whatever the machine's speed.  Duplicates
(`Mix.duplicates`: the same entry published again a few events later, as a retried request would) and out-of-order
delivery (`Mix.shuffle_window`: events shuffled within consecutive windows of K) are applied to that stream.

Publishing (pacing, the local queue through the ingest path or a running API) is `engage_assets.demo.event_publisher`;
`summary` reports counts, rates and shares, never an event's values.
"""

from __future__ import annotations

import bisect
import json
import random
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from engage_assets.demo.datagen.carts import REASON_WEIGHTS, REASONS
from engage_assets.demo.datagen.common import CURRENCY, USD_PER_UNIT
from engage_assets.demo.event_publisher import Plan, Published, Sink, Tally, duplicated, shuffled

SOURCE = "ecommerce.cart"
HIGH_VALUE_SHARE = 0.8  # carts worth $50 or more: the spec's event pattern `cartValue: [50, 999999]`
HIGH_VALUE_USD = 50.0
ITEM_COUNT_WEIGHTS = (0.3, 0.28, 0.2, 0.13, 0.09)  # 1-5 products
QUANTITY_CUM_WEIGHTS = [0.85, 0.97, 1.0]  # quantity 1, 2, 3 (the generator's)
DRAW_TRIES = 10  # tries at a cart in the wanted value band before the last one is kept
OPEN_CARTS = 50_000  # open carts kept for purchases and stock changes (a random one is forgotten past this)
RESTOCK_SHARE = 0.1
DEFAULT_CUSTOMERS = 100_000

TABLES_SQL = (
    "SELECT schema_name, table_name FROM duckdb_tables() UNION ALL SELECT schema_name, view_name FROM duckdb_views()"
)
CUSTOMER_TABLES = ("marts.customers", "raw.customers")
CUSTOMERS_SQL = """
SELECT CAST(customer_id AS VARCHAR), CAST(marketplace AS VARCHAR) FROM {table}
ORDER BY hash(CAST(customer_id AS VARCHAR) || $salt), customer_id LIMIT $n
"""
PRODUCTS_SQL = """
SELECT CAST(product_id AS VARCHAR), CAST(name AS VARCHAR), CAST(price_usd AS DOUBLE), in_stock FROM raw.inventory
QUALIFY row_number() OVER (PARTITION BY product_id ORDER BY loaded_at DESC) = 1
ORDER BY product_id
"""


class WarehouseUnavailable(Exception):
    """The warehouse is missing, unreadable, or lacks the tables the simulator draws from."""


@dataclass(frozen=True)
class Product:
    """A product as the shop sells it."""

    product_id: str
    name: str
    price_usd: float


@dataclass(frozen=True)
class Shop:
    """What the simulator draws from: customers (id, currency), products, and which were in stock at the start."""

    customers: list[tuple[str, str]]
    products: list[Product]
    in_stock: list[bool]


def load_shop(warehouse_path: Path, seed: int, max_customers: int = DEFAULT_CUSTOMERS) -> Shop:
    """Customers (a seed-determined sample of up to `max_customers`) and the newest inventory, read-only."""
    if not warehouse_path.exists():
        raise WarehouseUnavailable(
            f"no warehouse at {warehouse_path}: run `engage generate` (or `engage run`) first, or set ENGAGE_HOME"
        )
    try:
        with duckdb.connect(str(warehouse_path), read_only=True) as con:
            tables = {f"{s}.{t}" for s, t in con.execute(TABLES_SQL).fetchall()}
            table = next((t for t in CUSTOMER_TABLES if t in tables), None)
            if table is None or "raw.inventory" not in tables:
                raise WarehouseUnavailable(
                    f"the warehouse at {warehouse_path} has no customers ({' or '.join(CUSTOMER_TABLES)}) or no "
                    "raw.inventory: run `engage generate` first"
                )
            customers = con.execute(CUSTOMERS_SQL.format(table=table), {"salt": str(seed), "n": max_customers})
            rows = customers.fetchall()
            products = con.execute(PRODUCTS_SQL).fetchall()
    except duckdb.Error as exc:
        raise WarehouseUnavailable(f"cannot read the warehouse at {warehouse_path} ({type(exc).__name__})") from None
    if not rows or not products:
        raise WarehouseUnavailable(f"the warehouse at {warehouse_path} has no customers or no products")
    return Shop(
        customers=[(cid, CURRENCY.get(str(mkt), "USD")) for cid, mkt in rows],
        products=[Product(pid, name or pid, max(float(price or 0.0), 0.01)) for pid, name, price, _ in products],
        in_stock=[bool(stock) for *_, stock in products],
    )


@dataclass(frozen=True)
class Mix:
    """The event mix: shares of purchases and stock changes (the rest are abandoned carts), of duplicates, and the
    shuffle window (0 or 1: in order)."""

    purchased: float = 0.15
    inventory: float = 0.02
    duplicates: float = 0.0
    shuffle_window: int = 0


class OpenCart(NamedTuple):
    """A cart abandoned in this run and not bought yet: what its purchase and a stock change need."""

    customer_id: str
    cart_id: str
    value: float
    products: tuple[int, ...]


def cumulative(weights: Iterable[float]) -> list[float]:
    """Running sums of the weights (for `pick`)."""
    out: list[float] = []
    for w in weights:
        out.append((out[-1] if out else 0.0) + float(w))
    return out


def pick(rng: random.Random, cum: Sequence[float]) -> int:
    """An index drawn with the weights whose running sums are `cum`."""
    return bisect.bisect_right(cum, rng.random() * cum[-1])


def entry(detail_type: str, detail: dict[str, Any], stamp: str) -> dict[str, str]:
    """The PutEvents entry of one event; its `Time` is the event's own timestamp."""
    return {
        "Source": SOURCE,
        "DetailType": detail_type,
        "Detail": json.dumps(detail, separators=(",", ":")),
        "Time": stamp,
    }


class CartStream:
    """The simulated shop's events, an endless stream, deterministic for a seed, a start and a rate."""

    def __init__(self, shop: Shop, mix: Mix, seed: int, start: datetime, rate: float) -> None:
        self.shop, self.mix, self.rate = shop, mix, rate
        self.rng = random.Random(seed)
        self.tag = f"SIM{seed}"
        self.start_s = start.timestamp()
        self.open: list[OpenCart] = []
        self.in_stock = [p for p, stock in enumerate(shop.in_stock) if stock]
        self.stock_pos = {p: i for i, p in enumerate(self.in_stock)}
        self.out = deque(p for p, stock in enumerate(shop.in_stock) if not stock)
        self.carts = self.orders = self.high_value = 0
        self.reason_cum = cumulative(REASON_WEIGHTS)
        self.count_cum = cumulative(ITEM_COUNT_WEIGHTS)

    def __iter__(self) -> Iterator[Published]:
        return shuffled(duplicated(self.events(), self.mix.duplicates, self.rng), self.mix.shuffle_window, self.rng)

    def stamp(self, i: int) -> str:
        """The simulated time of the i-th event, ISO 8601 in UTC with milliseconds."""
        return datetime.fromtimestamp(self.start_s + i / self.rate, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"

    def events(self) -> Iterator[Published]:
        """The events in the order they happen (before duplicates and shuffling)."""
        for i in count():
            stamp, r = self.stamp(i), self.rng.random()
            if r < self.mix.purchased:
                yield self.purchase(stamp) if self.open else self.abandon(stamp)
            elif r < self.mix.purchased + self.mix.inventory:
                yield self.stock_change(stamp)
            else:
                yield self.abandon(stamp)

    def draw_lines(self, want_high: bool) -> tuple[list[tuple[int, int]], float]:
        """(product, quantity) lines of distinct products, in the wanted value band when `DRAW_TRIES` allow; and
        their value in USD."""
        pool: list[int] | range = self.in_stock or range(len(self.shop.products))
        lines: list[tuple[int, int]] = []
        value = 0.0
        for _ in range(DRAW_TRIES):
            k = min(pick(self.rng, self.count_cum) + 1, len(pool))
            lines = [(p, pick(self.rng, QUANTITY_CUM_WEIGHTS) + 1) for p in self.rng.sample(pool, k)]
            value = sum(self.shop.products[p].price_usd * q for p, q in lines)
            if (value >= HIGH_VALUE_USD) == want_high:
                break
        return lines, value

    def abandon(self, stamp: str) -> Published:
        """A customer leaves a cart."""
        customer_id, currency = self.rng.choice(self.shop.customers)
        lines, value_usd = self.draw_lines(self.rng.random() < HIGH_VALUE_SHARE)
        self.high_value += value_usd >= HIGH_VALUE_USD
        per_unit = USD_PER_UNIT.get(currency, 1.0)
        items, value = [], 0.0
        for p, quantity in lines:
            product = self.shop.products[p]
            price = round(product.price_usd / per_unit, 2)
            value += price * quantity
            in_stock = p in self.stock_pos
            items.append(
                {
                    "id": product.product_id,
                    "name": product.name,
                    "price": price,
                    "quantity": quantity,
                    "inStock": in_stock,
                }
            )
        cart = OpenCart(customer_id, f"CART-{self.tag}-{self.carts:08d}", round(value, 2), tuple(p for p, _ in lines))
        self.carts += 1
        self.remember(cart)
        reason = str(REASONS[pick(self.rng, self.reason_cum)])
        detail = {
            "customerId": customer_id,
            "cartId": cart.cart_id,
            "cartValue": cart.value,
            "currency": currency,
            "itemCount": len(items),
            "items": items,
            "abandonmentReason": reason,
            "timestamp": stamp,
        }
        return Published("CartAbandoned", entry("CartAbandoned", detail, stamp))

    def remember(self, cart: OpenCart) -> None:
        """Keep the cart for a later purchase or stock change (past `OPEN_CARTS`, it takes a random one's place)."""
        if len(self.open) < OPEN_CARTS:
            self.open.append(cart)
        else:
            self.open[self.rng.randrange(OPEN_CARTS)] = cart

    def purchase(self, stamp: str) -> Published:
        """An open cart of this run is bought (and leaves the open carts)."""
        j = self.rng.randrange(len(self.open))
        cart = self.open[j]
        self.open[j] = self.open[-1]
        self.open.pop()
        order_id = f"ORDER-{self.tag}-{self.orders:08d}"
        self.orders += 1
        detail = {"customerId": cart.customer_id, "cartId": cart.cart_id, "orderId": order_id, "value": cart.value}
        return Published("CartPurchased", entry("CartPurchased", detail | {"timestamp": stamp}, stamp))

    def stock_change(self, stamp: str) -> Published:
        """An open cart's item (else any product) goes out of stock; the product out longest comes back instead
        once more than `RESTOCK_SHARE` of the catalogue is out."""
        if self.out and (len(self.out) > RESTOCK_SHARE * len(self.shop.products) or not self.in_stock):
            product, in_stock = self.out.popleft(), True
            self.stock_pos[product] = len(self.in_stock)
            self.in_stock.append(product)
        else:
            product, in_stock = self.sell_out_candidate(), False
            i = self.stock_pos.pop(product)
            last = self.in_stock.pop()
            if last != product:
                self.in_stock[i], self.stock_pos[last] = last, i
            self.out.append(product)
        detail = {"productId": self.shop.products[product].product_id, "inStock": in_stock, "timestamp": stamp}
        return Published("InventoryChanged", entry("InventoryChanged", detail, stamp))

    def sell_out_candidate(self) -> int:
        """An in-stock item of a random open cart, else a random in-stock product."""
        if self.open:
            product = self.rng.choice(self.rng.choice(self.open).products)
            if product in self.stock_pos:
                return product
        return self.rng.choice(self.in_stock)


def summary(tally: Tally, plan: Plan, stream: CartStream, sink: Sink, seed: int) -> dict[str, Any]:
    """The run's summary: counts, rates and shares, never an event's values."""
    out: dict[str, Any] = {
        "simulator": "carts",
        "sink": sink.name,
        "seed": seed,
        "requested": {"rate": plan.rate, "events": plan.total, "durationS": plan.deadline_s},
        "published": tally.published,
        "byType": dict(sorted(tally.by_type.items())),
        "duplicates": tally.duplicates,
        "failed": tally.attempted - tally.published,
        "failedByCode": dict(sorted(tally.failed_by_code.items())),
        "elapsedS": round(tally.elapsed_s, 3),
        "achievedRate": round(tally.published / tally.elapsed_s, 1) if tally.elapsed_s > 0 else None,
        "cartsAtLeast50Usd": round(stream.high_value / stream.carts, 3) if stream.carts else None,
    }
    if tally.error:
        out["error"] = tally.error
    return out
