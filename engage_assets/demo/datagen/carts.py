"""Abandoned carts: `raw.carts`, `raw.cart_items`, `raw.cart_outcomes` (and, from `commerce`, the inventory and the
per-customer payment-method and e-mail signals), drawn from a known process so `purchase-intent-v4` can be judged.

Volume.  The spec states no daily cart count (5,000 events/s is a peak capacity); it is derived from its business
metrics: $1.2M a year ÷ ($150 × 30 % recovered) ≈ 26,700 carts contacted a year ÷ 60 % passing the filters ≈ 122 a
day of $50+ carts, about 84 % of the carts drawn here, so `CARTS_PER_DAY` = 145 at scale 1.0 (at least
`MIN_CARTS_PER_DAY`, so a small scale still trains a model), over the `CART_DAYS` = 90 days before `end`.

Carts.  Every cart was abandoned (`abandoned_at`, uniform over its day; `created_at` 5–60+ minutes before) by a
shopper drawn with weight 1 + orders_last_365d.  `item_count` = 1 + Poisson(1.8) distinct products from
`raw.inventory`, quantity 1 (85 %), 2 (12 %) or 3; unit prices are the USD list price in the customer's marketplace
currency, `cart_value` their sum (local currency), cart_value_usd = round(cart_value × usd_per_unit, 2).

Outcome.  The cart is bought within 7 days with probability p = sigmoid(η):

    η = -1.00
        + 0.30 · (purchase_history − 3)              purchase_history = raw.customers.orders_last_365d
        + 0.30 · ln(avg_order_value_usd / 100)       avg_order_value_usd = 12 · monthly_revenue_usd / max(orders, 1)
        − 0.60 · ln(cart_value_usd / 150)
        − 0.12 · (item_count − 3)
        + 3.00 · (email_engagement − 0.4)            emails_opened_90d / emails_sent_90d (raw.email_engagement)
        + 2.20 · (discount_sensitivity − 0.4)        raw.customers.discount_sensitivity: the per-customer trait
                                                     the recovery discount works on (no cart column shows it)
        + REASON_EFFECT[abandonment_reason]

with REASON_EFFECT session_timeout +0.3, browser_closed +0.1, shipping_cost −0.5, price_comparison −0.6,
payment_failed +0.6, just_browsing −1.2 (drawn 34 / 20 / 14 / 12 / 6 / 14 %); about 34 % of carts are bought
(`true_purchase_prob` = p; a logistic regression on the four model features reaches AUC ≈ 0.73–0.74, the truth
≈ 0.79).  A bought cart's purchase comes after a truncated exponential delay (mean 30 h, under
7 days).  The status is the state at `end` (midnight, the load): `purchased` when the purchase happened before it,
else `expired` once 7 days have passed (`expired_at` = abandoned_at + 7 days, the hourly expiration job), else
`abandoned` — so the latest days' carts are still open, and `raw.cart_outcomes` (label `purchased_within_7d`) holds
exactly the carts whose 7-day window closed before `end`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from engage_assets.demo.datagen.commerce import (
    CATEGORIES,
    N_PRODUCTS,
    Catalogue,
    customer_payment_methods,
    email_engagement,
    inventory,
)
from engage_assets.demo.datagen.common import (
    CURRENCY,
    MARKETPLACES,
    USD_PER_UNIT,
    Populations,
    day_number,
    sigmoid,
    take_strings,
)

CARTS_PER_DAY = 145
MIN_CARTS_PER_DAY = 60
CART_DAYS = 90
RECOVERY_WINDOW_DAYS = 7
REASONS = np.array(
    ["session_timeout", "browser_closed", "shipping_cost", "price_comparison", "payment_failed", "just_browsing"]
)
REASON_WEIGHTS = np.array([0.34, 0.2, 0.14, 0.12, 0.06, 0.14])
REASON_EFFECT = np.array([0.3, 0.1, -0.5, -0.6, 0.6, -1.2])
COEFFICIENTS = {
    "intercept": -1.0,
    "purchase_history": 0.30,
    "log_avg_order_value": 0.30,
    "log_cart_value": -0.60,
    "item_count": -0.12,
    "email_engagement": 3.0,
    "discount_sensitivity": 2.2,
}
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000


@dataclass(frozen=True)
class Customers:
    """What the cart process reads per customer (index = the customer number): raw.customers columns and the
    e-mail engagement feature."""

    orders: np.ndarray
    monthly_revenue_usd: np.ndarray
    discount_sensitivity: np.ndarray
    usd_per_unit: np.ndarray
    currency_code: np.ndarray
    email_engagement: np.ndarray


def cart_tables(
    rng: np.random.Generator, pops: Populations, end: date, scale: float, cust: pa.Table, mkt: np.ndarray
) -> dict[str, pa.Table]:
    """The cart tables, drawn in this order from `rng` after every other raw table (so those stay as they were)."""
    payments = customer_payment_methods(rng, pops.total)
    emails, engagement = email_engagement(rng, pops.total)
    products, catalogue = inventory(rng, end)
    rates = np.array([USD_PER_UNIT[CURRENCY[m]] for m in MARKETPLACES])
    customers = Customers(
        orders=cust.column("orders_last_365d").to_numpy(),
        monthly_revenue_usd=cust.column("monthly_revenue_usd").to_numpy(),
        discount_sensitivity=cust.column("discount_sensitivity").to_numpy(),
        usd_per_unit=rates[mkt],
        currency_code=mkt,
        email_engagement=engagement,
    )
    per_day = max(int(CARTS_PER_DAY * scale), MIN_CARTS_PER_DAY)
    carts, items, outcomes = draw_carts(rng, pops, end, per_day, customers, catalogue)
    return {
        "inventory": products,
        "customer_payment_methods": payments,
        "email_engagement": emails,
        "carts": carts,
        "cart_items": items,
        "cart_outcomes": outcomes,
    }


def purchase_probability(
    customers: Customers, cid: np.ndarray, cart_value_usd: np.ndarray, item_count: np.ndarray, reason: np.ndarray
) -> np.ndarray:
    """The true probability that a cart is bought within 7 days (the module docstring's η)."""
    c = COEFFICIENTS
    orders = customers.orders[cid]
    aov = 12.0 * customers.monthly_revenue_usd[cid] / np.maximum(orders, 1)
    eta = (
        c["intercept"]
        + c["purchase_history"] * (orders - 3)
        + c["log_avg_order_value"] * np.log(np.maximum(aov, 1.0) / 100.0)
        + c["log_cart_value"] * np.log(np.maximum(cart_value_usd, 1.0) / 150.0)
        + c["item_count"] * (item_count - 3)
        + c["email_engagement"] * (customers.email_engagement[cid] - 0.4)
        + c["discount_sensitivity"] * (customers.discount_sensitivity[cid] - 0.4)
        + REASON_EFFECT[reason]
    )
    return sigmoid(eta)


def cart_lines(
    rng: np.random.Generator, item_count: np.ndarray, usd_per_unit: np.ndarray, catalogue: Catalogue
) -> tuple[pa.Table, np.ndarray]:
    """The items of every cart (distinct products per cart) and each cart's value in its local currency."""
    n = len(item_count)
    base = rng.integers(0, N_PRODUCTS, size=n)
    step = rng.integers(1, N_PRODUCTS, size=n)
    cart = np.repeat(np.arange(n), item_count)
    position = np.arange(len(cart)) - np.repeat(np.cumsum(item_count) - item_count, item_count)
    product = (base[cart] + position * step[cart]) % N_PRODUCTS
    quantity = rng.choice(np.array([1, 2, 3]), size=len(cart), p=[0.85, 0.12, 0.03])
    price = np.round(catalogue.price_usd[product] / usd_per_unit[cart], 2)
    value = np.round(np.bincount(cart, weights=price * quantity, minlength=n), 2)
    table = pa.table(
        {
            "kid": pa.array(cart, pa.int64()),
            "pid": pa.array(product, pa.int64()),
            "product_name": take_strings(catalogue.names, product),
            "category": take_strings(CATEGORIES, catalogue.category[product]),
            "price": price,
            "quantity": pa.array(quantity, pa.int32()),
        }
    )
    return table, value


def settle(
    rng: np.random.Generator, p: np.ndarray, abandoned_us: np.ndarray, end: date
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each cart's state at `end`: status code (0 abandoned, 1 purchased, 2 expired), purchase time (-1 when none),
    whether the 7-day window has closed, and the label (bought within 7 days)."""
    bought = rng.random(len(p)) < p
    window = RECOVERY_WINDOW_DAYS * DAY_US
    # Truncated exponential delay, mean 30 h before truncation, always inside the 7-day window.
    u = rng.random(len(p))
    delay = -30.0 * np.log1p(-u * (1.0 - np.exp(-window / HOUR_US / 30.0))) * HOUR_US
    purchased_us = abandoned_us + np.minimum(delay.astype(np.int64), window - 1)
    end_us = day_number(end) * DAY_US
    closed = abandoned_us + window <= end_us
    purchased = bought & (purchased_us < end_us)
    status = np.where(purchased, 1, np.where(closed, 2, 0))
    return status, np.where(purchased, purchased_us, -1), closed, bought


def timestamps(us: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Microseconds since the epoch as an Arrow timestamp array (NULL where not `valid`)."""
    mask = None if valid is None else ~valid
    return pa.array(us, pa.timestamp("us"), mask=mask)


def draw_carts(
    rng: np.random.Generator, pops: Populations, end: date, per_day: int, customers: Customers, catalogue: Catalogue
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """`raw.carts`, `raw.cart_items` and `raw.cart_outcomes` for `per_day` abandoned carts a day."""
    days = np.repeat(np.arange(day_number(end) - CART_DAYS, day_number(end)), per_day)
    n = len(days)
    weight = 1.0 + customers.orders[: pops.shoppers]
    cid = rng.choice(pops.shoppers, size=n, p=weight / weight.sum())
    abandoned = days.astype(np.int64) * DAY_US + rng.integers(0, DAY_US, size=n)
    created = abandoned - (5 * MINUTE_US + rng.exponential(25.0, size=n) * MINUTE_US).astype(np.int64)
    item_count = 1 + np.minimum(rng.poisson(1.8, size=n), 11)
    reason = rng.choice(len(REASONS), size=n, p=REASON_WEIGHTS)
    items, value = cart_lines(rng, item_count, customers.usd_per_unit[cid], catalogue)
    value_usd = np.round(value * customers.usd_per_unit[cid], 2)
    p = purchase_probability(customers, cid, value_usd, item_count, reason)
    status, purchased_us, closed, bought = settle(rng, p, abandoned, end)
    currencies = [CURRENCY[m] for m in MARKETPLACES]
    carts = pa.table(
        {
            "kid": pa.array(np.arange(n), pa.int64()),
            "cid": pa.array(cid, pa.int64()),
            "created_at": timestamps(created),
            "abandoned_at": timestamps(abandoned),
            "status": take_strings(["abandoned", "purchased", "expired"], status),
            "cart_value": value,
            "currency": take_strings(currencies, customers.currency_code[cid]),
            "item_count": pa.array(item_count, pa.int32()),
            "abandonment_reason": take_strings(REASONS, reason),
            "purchased_at": timestamps(purchased_us, status == 1),
            "expired_at": timestamps(abandoned + RECOVERY_WINDOW_DAYS * DAY_US, status == 2),
        }
    )
    known = np.flatnonzero(closed)
    outcomes = pa.table(
        {
            "kid": pa.array(known, pa.int64()),
            "cid": pa.array(cid[known], pa.int64()),
            "abandoned_at": timestamps(abandoned[known]),
            "purchased_within_7d": bought[known],
            "true_purchase_prob": p[known],
        }
    )
    return carts, items, outcomes
