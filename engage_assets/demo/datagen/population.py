"""The raw operational tables: customers, order issues, churn events, weekly at-risk snapshots, offer history."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from engage_assets.demo.datagen.common import (
    ANALYTICS_WEEKS,
    CHURN_DAYS,
    CHURN_REASONS,
    CURRENCY,
    MARKETPLACE_WEIGHTS,
    MARKETPLACES,
    ORDER_DAYS,
    TIERS,
    TIME_ZONES,
    USD_PER_UNIT,
    Populations,
    date_array,
    day_number,
    take_strings,
)


def customers(rng: np.random.Generator, pops: Populations, end: date) -> tuple[pa.Table, np.ndarray]:
    n = pops.total
    idx = np.arange(n)
    churned = idx >= pops.shoppers
    at_risk = idx < pops.at_risk
    mkt = rng.choice(len(MARKETPLACES), size=n, p=MARKETPLACE_WEIGHTS)
    tz_pick = rng.integers(0, 4, size=n)
    # Tier and value: at-risk and churned pools skew to paying tiers (they are who retention targets).
    tier = np.select(
        [at_risk, churned],
        [rng.choice(4, size=n, p=[0.15, 0.2, 0.42, 0.23]), rng.choice(4, size=n, p=[0.35, 0.27, 0.26, 0.12])],
        rng.choice(4, size=n, p=[0.35, 0.3, 0.25, 0.1]),
    )
    ltv = np.round(rng.lognormal(mean=5.6 + 0.35 * tier + 0.2 * at_risk, sigma=0.9, size=n), 2)
    orders = rng.poisson(np.where(churned, 2.0, 2.7), size=n)
    status = np.full(n, "active", dtype=object)
    bad = rng.random(n)
    status[bad < 0.02] = "suspended"
    status[(bad >= 0.02) & (bad < 0.04)] = "fraud_review"
    status[(bad >= 0.04) & (bad < 0.05)] = "closed"
    status[churned & (bad >= 0.05)] = "churned"
    signup = day_number(end) - rng.integers(60, 3650, size=n)
    tz_table = np.array([[TIME_ZONES[m][k % len(TIME_ZONES[m])] for k in range(4)] for m in MARKETPLACES])
    return pa.table(
        {
            "cid": pa.array(idx, pa.int64()),
            "marketplace": take_strings(MARKETPLACES, mkt),
            "time_zone": pa.array(tz_table[mkt, tz_pick]),
            "subscription_tier": pa.array(TIERS[tier]),
            "signup_date": date_array(signup),
            "lifetime_value_usd": ltv,
            "orders_last_365d": pa.array(orders, pa.int32()),
            "monthly_revenue_usd": np.round(ltv / rng.uniform(12, 48, size=n), 2),
            "satisfaction_history": np.round(np.clip(rng.normal(4.1, 0.6, size=n), 1, 5), 2),
            "complaint_history": pa.array(rng.poisson(0.6, size=n), pa.int32()),
            "discount_sensitivity": np.round(rng.beta(2, 3, size=n), 3),
            "account_status": pa.array(status.astype(str)),
            "email_opt_in": rng.random(n) < 0.92,
            "sms_opt_in": rng.random(n) < 0.6,
            "push_opt_in": rng.random(n) < 0.5,
            "phone_opt_in": rng.random(n) < 0.7,
            "marketing_opt_out": rng.random(n) < 0.05,
        }
    ), mkt


def order_tracking(rng: np.random.Generator, pops: Populations, end: date, per_day: int, mkt: np.ndarray) -> pa.Table:
    days = np.repeat(np.arange(day_number(end) - ORDER_DAYS, day_number(end)), per_day)
    n = len(days)
    # Order issues come from non-at-risk shoppers mostly, so refund and churn audiences overlap a little.
    cid = rng.integers(0, pops.shoppers, size=n)
    damaged = rng.random(n) < 0.18
    delay = np.where(damaged & (rng.random(n) < 0.5), rng.integers(0, 3, size=n), 3 + rng.geometric(0.3, size=n) - 1)
    delay_txt = delay.astype(str).astype(object)
    # The tracking export sometimes writes garbage into delay_days: the platform must reject, not crash.
    garbage = rng.random(n) < 0.0002
    delay_txt[garbage] = rng.choice(np.array(["n/a", "", "3 days"], dtype=object), size=int(garbage.sum()))
    currencies = [CURRENCY[m] for m in MARKETPLACES]
    cur_code = mkt[cid]
    usd = np.round(rng.lognormal(4.1, 0.7, size=n), 2)
    rate = np.array([USD_PER_UNIT[c] for c in currencies])[cur_code]
    complaints = np.where(rng.random(n) < 0.21, rng.integers(1, 4, size=n), 0)
    return pa.table(
        {
            "oid": pa.array(np.arange(n), pa.int64()),
            "cid": pa.array(cid, pa.int64()),
            "delivery_date": date_array(days),
            "expected_delivery_date": date_array(days - np.maximum(delay, 0)),
            "delay_days": pa.array(delay_txt.astype(str)),
            "order_value": np.round(usd / rate, 2),
            "currency": take_strings(currencies, cur_code),
            "item_condition": take_strings(["good", "damaged"], damaged.astype(np.int8)),
            "customer_complaints": pa.array(complaints, pa.int32()),
            "refundable": rng.random(n) >= 0.1,
        }
    )


def churned_customers(rng: np.random.Generator, pops: Populations, end: date, per_day: int) -> pa.Table:
    days = np.repeat(np.arange(day_number(end) - CHURN_DAYS, day_number(end)), per_day)
    n = len(days)
    cid = pops.shoppers + rng.permutation(np.arange(n) % pops.churned)
    # Addressable reasons dominate; ~28 % are not worth a win-back (moved, deceased, duplicates, other).
    reason = rng.choice(len(CHURN_REASONS), size=n, p=[0.26, 0.18, 0.16, 0.12, 0.1, 0.03, 0.05, 0.1])
    return pa.table(
        {
            "cid": pa.array(cid, pa.int64()),
            "churn_date": date_array(days),
            "churn_reason": pa.array(CHURN_REASONS[reason]),
            "last_purchase_date": date_array(days - rng.integers(5, 120, size=n)),
            "engagement_score": np.round(rng.beta(2, 5, size=n), 3),
            "engagement_history": np.round(rng.beta(3, 3, size=n), 3),
            "subscription_tenure_months": pa.array(rng.integers(1, 96, size=n), pa.int32()),
            "win_back_attempts": pa.array(rng.choice(4, size=n, p=[0.7, 0.22, 0.06, 0.02]), pa.int32()),
            "feature_requests": pa.array(rng.poisson(1.2, size=n), pa.int32()),
            "competitor_activity": np.round(rng.beta(2, 4, size=n), 3),
        }
    )


def risk_features(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Churn-risk features driven by one latent risk, so signals are correlated as in life."""
    z = rng.normal(size=n)
    hist = np.round(rng.gamma(4, 1.5, size=n), 2)
    eng_change = np.round(np.clip(-0.33 + 0.17 * z + rng.normal(0, 0.12, size=n), -0.95, 0.6), 3)
    login_ratio = np.clip(0.49 - 0.22 * z + rng.normal(0, 0.18, size=n), 0.0, 2.0)
    since_purchase = np.clip(67 + 22 * z + rng.normal(0, 22, size=n), 0, 365).astype(np.int32)
    engagement = np.round(np.clip(0.45 - 0.15 * z + rng.normal(0, 0.1, size=n), 0, 1), 3)
    return {
        "z": z,
        "engagement_score": engagement,
        "engagement_change": eng_change,
        "login_frequency": np.round(hist * login_ratio, 2),
        "historical_avg": hist,
        "purchase_frequency": np.round(np.clip(rng.gamma(2, 0.6, size=n) * (1 - 0.25 * z), 0, None), 2),
        "days_since_last_purchase": since_purchase,
        "support_tickets": rng.poisson(np.clip(1.0 + 0.6 * z, 0.1, None)).astype(np.int32),
        "feature_usage": np.round(np.clip(0.5 - 0.15 * z + rng.normal(0, 0.15, size=n), 0, 1), 3),
    }


def customer_analytics(rng: np.random.Generator, pops: Populations, end: date, per_week: int) -> pa.Table:
    end_monday = day_number(end) - ((end.weekday()) % 7)
    weeks = np.arange(end_monday - 7 * (ANALYTICS_WEEKS - 1), end_monday + 1, 7)
    cols: dict[str, list] = {}
    for week in weeks:
        cid = rng.choice(pops.at_risk, size=min(per_week, pops.at_risk), replace=False)
        feats = risk_features(rng, len(cid))
        trend = np.where(
            feats["engagement_change"] < -0.1,
            "declining",
            np.where(feats["engagement_change"] > 0.1, "growing", "stable"),
        )
        part = {
            "snapshot_date": np.full(len(cid), week, dtype=np.int32),
            "cid": cid.astype(np.int64),
            "engagement_trend": trend,
            "subscription_status": np.where(rng.random(len(cid)) < 0.9, "active", "past_due"),
            "subscription_tenure_months": rng.integers(1, 96, size=len(cid)).astype(np.int32),
            **{k: v for k, v in feats.items() if k != "z"},
        }
        for k, v in part.items():
            cols.setdefault(k, []).append(v)
    data = {k: np.concatenate(v) for k, v in cols.items()}
    table = {k: v for k, v in data.items() if k != "snapshot_date"}
    table["snapshot_date"] = date_array(data["snapshot_date"])
    return pa.table(table)


def offer_history(rng: np.random.Generator, pops: Populations, end: date, scale: float) -> pa.Table:
    """Past offers, dated uniformly over 400 days so that any partition's look-back windows see the same rates.

    Rates are chosen so the eligibility and frequency-cap filters remove about what the spec reports.
    """
    e = day_number(end)
    parts = []
    labels: list[tuple[str, str]] = []

    def draw(
        program: str,
        offer_type: str,
        cids: np.ndarray,
        per_year: float,
        amount: float,
        window: tuple[int, int] = (1, 400),
        exactly: int | None = None,
    ):
        k = np.full(len(cids), exactly) if exactly is not None else rng.poisson(per_year * 400 / 365, size=len(cids))
        cid = np.repeat(cids, k)
        parts.append(
            {
                "cid": cid.astype(np.int64),
                "program_id": np.full(len(cid), len(labels), dtype=np.int32),
                "offer_day": (e - rng.integers(window[0], window[1], size=len(cid))).astype(np.int32),
                "amount_usd": np.round(rng.uniform(0.5, 1.5, size=len(cid)) * amount, 2),
            }
        )
        labels.append((program, offer_type))

    shoppers = np.arange(pops.shoppers)
    group = rng.random(pops.shoppers)
    # Recent claimers trip the 90-day eligibility rule; past claimers (two refunds 95-365 days ago) only the
    # two-a-year frequency cap; everyone else rarely had one.
    draw("proactive-refunds", "credit", shoppers[group < 0.3], 2.2, 15)
    draw("proactive-refunds", "partial", shoppers[(group >= 0.3) & (group < 0.5)], 0, 20, (95, 365), exactly=2)
    draw("proactive-refunds", "credit", shoppers[group >= 0.5], 0.3, 10)
    # The at-risk pool got retention offers often (weekly runs) and other programs' offers too.
    at_risk = np.arange(pops.at_risk)
    draw("churn-prevention", "standard", at_risk, 3.5, 40)
    draw("win-back-campaigns", "basic", at_risk, 2.2, 20)
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n = len(data["cid"])
    return pa.table(
        {
            "oid": pa.array(np.arange(n), pa.int64()),
            "cid": pa.array(data["cid"]),
            "program_id": take_strings([p for p, _ in labels], data["program_id"]),
            "offer_type": take_strings([t for _, t in labels], data["program_id"]),
            "offer_date": date_array(data["offer_day"]),
            "amount_usd": data["amount_usd"],
        }
    )
