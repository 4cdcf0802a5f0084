"""The generator's reference data (marketplaces, currencies, tiers, reasons), volumes, populations and helpers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MARKETPLACES = np.array(["US", "UK", "DE", "FR", "JP", "IN", "BR", "AU"])
MARKETPLACE_WEIGHTS = np.array([0.38, 0.12, 0.12, 0.08, 0.08, 0.1, 0.07, 0.05])
CURRENCY = {"US": "USD", "UK": "GBP", "DE": "EUR", "FR": "EUR", "JP": "JPY", "IN": "INR", "BR": "BRL", "AU": "AUD"}
USD_PER_UNIT = {"USD": 1.0, "GBP": 1.27, "EUR": 1.08, "JPY": 0.0067, "INR": 0.012, "BRL": 0.2, "AUD": 0.66}
TIME_ZONES = {
    "US": ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"],
    "UK": ["Europe/London"],
    "DE": ["Europe/Berlin"],
    "FR": ["Europe/Paris"],
    "JP": ["Asia/Tokyo"],
    "IN": ["Asia/Kolkata"],
    "BR": ["America/Sao_Paulo"],
    "AU": ["Australia/Sydney", "Australia/Perth"],
}
TIERS = np.array(["basic", "standard", "premium", "premium_plus"])
CHURN_REASONS = np.array(
    ["price", "features", "competition", "support", "moved", "deceased", "duplicate_account", "other"]
)

# Volumes at scale 1.0 (the spec's): per-day order issues, churn events per day, weekly at-risk snapshot.
ORDER_ISSUES_PER_DAY = 50_000
CHURN_EVENTS_PER_DAY = 1_800  # ~100,000 in a 60-day window after the win_back_attempts < 2 cut
AT_RISK_PER_WEEK = 505_000  # ~500,000 match the connector's churn-signal WHERE clause
ORDER_DAYS = 42
CHURN_DAYS = 200
ANALYTICS_WEEKS = 8


@dataclass(frozen=True)
class Populations:
    """Customer id ranges: shoppers (order issues, at-risk analytics) and churned customers (win-back)."""

    shoppers: int
    at_risk: int  # the first `at_risk` shoppers are the churn-prevention pool
    churned: int

    @property
    def total(self) -> int:
        return self.shoppers + self.churned


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def day_number(d: date) -> int:
    """Days since 1970-01-01 (what a DuckDB DATE stores)."""
    return (d - date(1970, 1, 1)).days


def date_array(day_numbers: np.ndarray) -> pa.Array:
    """Day numbers as an Arrow date32 array."""
    return pa.array(day_numbers.astype("int32"), type=pa.int32()).cast(pa.date32())


def take_strings(names: Iterable[Any], codes: np.ndarray) -> pa.Array:
    """Strings by code, built in Arrow (much faster than NumPy object arrays)."""
    return pc.take(pa.array(list(names)), pa.array(codes))
