"""The reference tables abandoned carts need: the product inventory and two per-customer signal tables.

- `inventory`: a fixed catalogue of `N_PRODUCTS` products (a prime, so `carts` can walk it without repeating a
  product inside one cart), USD list prices by category, about 7 % out of stock.
- `customer_payment_methods`: one row per customer, `payment_method_on_file` (about 86 % true) for the trust filter.
  A table of its own because `raw.customers` must stay byte-identical for a seed.
- `email_engagement`: one row per customer, e-mails sent / opened / clicked in the last 90 days; the purchase-intent
  feature `email_engagement` is `emails_opened_90d / emails_sent_90d` (every customer was sent at least 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from engage_assets.demo.datagen.common import day_number, take_strings

N_PRODUCTS = 1009  # prime: cart k walks base + j * step (mod N_PRODUCTS), distinct for j < N_PRODUCTS
CATEGORIES = np.array(["Electronics", "Home", "Fashion", "Beauty", "Sports", "Toys", "Books", "Grocery"])
CATEGORY_WEIGHTS = np.array([0.22, 0.16, 0.18, 0.1, 0.1, 0.08, 0.09, 0.07])
# Median list price (USD) by category; prices are lognormal around it.
CATEGORY_MEDIAN_USD = np.array([60.0, 38.0, 34.0, 22.0, 40.0, 26.0, 16.0, 9.0])
NOUNS = {
    "Electronics": ["Headphones", "Phone Case", "Screen Protector", "Charger", "Speaker", "Keyboard", "Webcam"],
    "Home": ["Lamp", "Cushion", "Kettle", "Towel Set", "Frying Pan", "Storage Box"],
    "Fashion": ["T-Shirt", "Sneakers", "Jacket", "Scarf", "Backpack", "Sunglasses"],
    "Beauty": ["Face Cream", "Shampoo", "Perfume", "Lip Balm", "Hair Dryer"],
    "Sports": ["Yoga Mat", "Water Bottle", "Dumbbells", "Running Socks", "Tennis Balls"],
    "Toys": ["Puzzle", "Building Blocks", "Plush Bear", "Board Game", "Kite"],
    "Books": ["Cookbook", "Novel", "Travel Guide", "Notebook", "Atlas"],
    "Grocery": ["Coffee Beans", "Green Tea", "Olive Oil", "Dark Chocolate", "Granola"],
}
ADJECTIVES = ["Wireless", "Classic", "Premium", "Compact", "Eco", "Deluxe", "Everyday", "Pro", "Mini", "Organic"]
PAYMENT_TYPES = np.array(["card", "paypal", "wallet"])


@dataclass(frozen=True)
class Catalogue:
    """The inventory as arrays, for drawing cart items: category code, name and USD list price per product."""

    category: np.ndarray
    names: list[str]
    price_usd: np.ndarray


def product_names(category: np.ndarray) -> list[str]:
    """A readable, deterministic name per product: an adjective and a noun of its category."""
    names = []
    for pid, code in enumerate(category):
        nouns = NOUNS[str(CATEGORIES[code])]
        names.append(f"{ADJECTIVES[(pid // len(nouns)) % len(ADJECTIVES)]} {nouns[pid % len(nouns)]}")
    return names


def inventory(rng: np.random.Generator, end: date) -> tuple[pa.Table, Catalogue]:
    """`raw.inventory`: one row per product, updated within the 3 days before `end`; and the catalogue arrays."""
    category = rng.choice(len(CATEGORIES), size=N_PRODUCTS, p=CATEGORY_WEIGHTS)
    price = np.round(CATEGORY_MEDIAN_USD[category] * rng.lognormal(0.0, 0.55, size=N_PRODUCTS), 2)
    price = np.maximum(price, 1.99)
    in_stock = rng.random(N_PRODUCTS) >= 0.07
    end_us = day_number(end) * 86_400_000_000
    updated = end_us - rng.integers(0, 3 * 86_400_000_000, size=N_PRODUCTS)
    names = product_names(category)
    table = pa.table(
        {
            "pid": pa.array(np.arange(N_PRODUCTS), pa.int64()),
            "name": pa.array(names),
            "category": take_strings(CATEGORIES, category),
            "price_usd": price,
            "in_stock": in_stock,
            "updated_at": pa.array(updated, pa.timestamp("us")),
        }
    )
    return table, Catalogue(category=category, names=names, price_usd=price)


def customer_payment_methods(rng: np.random.Generator, n_customers: int) -> pa.Table:
    """`raw.customer_payment_methods`: whether each customer has a payment method on file, and of which type."""
    on_file = rng.random(n_customers) < 0.86
    kind = rng.choice(len(PAYMENT_TYPES), size=n_customers, p=[0.7, 0.2, 0.1])
    return pa.table(
        {
            "cid": pa.array(np.arange(n_customers), pa.int64()),
            "payment_method_on_file": on_file,
            "payment_method_type": pa.array(PAYMENT_TYPES[kind].tolist(), pa.string(), mask=~on_file),
        }
    )


def email_engagement(rng: np.random.Generator, n_customers: int) -> tuple[pa.Table, np.ndarray]:
    """`raw.email_engagement` (90-day sent / opened / clicked counts) and the feature opened / sent per customer."""
    rate = rng.beta(2.0, 3.0, size=n_customers)  # each customer's open propensity (mean 0.4)
    sent = 4 + rng.poisson(8.0, size=n_customers)
    opened = rng.binomial(sent, rate)
    clicked = rng.binomial(opened, 0.3)
    table = pa.table(
        {
            "cid": pa.array(np.arange(n_customers), pa.int64()),
            "emails_sent_90d": pa.array(sent, pa.int32()),
            "emails_opened_90d": pa.array(opened, pa.int32()),
            "emails_clicked_90d": pa.array(clicked, pa.int32()),
        }
    )
    return table, opened / sent
