"""The labelled history the models train on, drawn from known logistic processes (`true_p_*` columns)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from engage_assets.demo.datagen.common import (
    CHURN_REASONS,
    Populations,
    date_array,
    day_number,
    sigmoid,
    take_strings,
)
from engage_assets.demo.datagen.population import risk_features


# The generator's hidden processes, as functions of the features the warehouse also holds for today's customers
# (the response simulator computes the same truth for the candidates it answers for).
def refund_p_churn(complaints: np.ndarray, satisfaction: np.ndarray, frequency: np.ndarray) -> np.ndarray:
    """P(a refund customer churns within 90 days): complaint history, satisfaction history, order frequency."""
    return sigmoid(-1.6 + 0.5 * complaints - 0.7 * (satisfaction - 4.1) - 0.18 * (frequency - 3))


def winback_p_returned(
    reason_effect: np.ndarray, ltv: np.ndarray, tenure: np.ndarray, engagement: np.ndarray
) -> np.ndarray:
    """P(a churned customer returns after a win-back offer): REASON_EFFECT of the churn reason, lifetime value,
    tenure in months, engagement history."""
    return sigmoid(-0.9 + reason_effect + 0.0011 * (ltv - 700) + 0.022 * (tenure - 48) + 3.2 * (engagement - 0.5))


def at_risk_p_churn(
    engagement: np.ndarray, logins: np.ndarray, purchases: np.ndarray, tickets: np.ndarray
) -> np.ndarray:
    """P(an at-risk customer churns within 90 days): engagement score, login and purchase frequency, tickets."""
    return sigmoid(
        0.2
        + 0.45 * (-6.0 * (engagement - 0.45) - 0.25 * (logins - 3.5) - 0.9 * (purchases - 1.2) + 0.35 * (tickets - 1))
    )


def refund_outcomes(rng: np.random.Generator, n: int, pops: Populations, end: date) -> pa.Table:
    delay = rng.geometric(0.3, size=n) + 1
    damaged = rng.random(n) < 0.18
    value = np.round(rng.lognormal(4.1, 0.7, size=n), 2)
    ltv = np.round(rng.lognormal(6.0, 0.9, size=n), 2)
    sat = np.round(np.clip(rng.normal(4.1, 0.6, size=n), 1, 5), 2)
    comp = rng.poisson(0.6, size=n)
    freq = rng.poisson(3.2, size=n)
    p_dis = sigmoid(
        -1.2 + 0.38 * (delay - 3) + 0.9 * damaged + 0.006 * (value - 60) + 0.00025 * (ltv - 400) - 0.55 * (sat - 4.1)
    )
    p_churn = refund_p_churn(comp, sat, freq)
    return pa.table(
        {
            "iid": pa.array(np.arange(n), pa.int64()),
            "cid": pa.array(rng.integers(0, pops.shoppers, size=n), pa.int64()),
            "issue_date": date_array(day_number(end) - rng.integers(120, 720, size=n)),
            "delay_days": pa.array(delay, pa.int32()),
            "order_value_usd": value,
            "item_damaged": damaged,
            "lifetime_value_usd": ltv,
            "satisfaction_history": sat,
            "complaint_history": pa.array(comp, pa.int32()),
            "order_frequency": pa.array(freq, pa.int32()),
            "dissatisfied": rng.random(n) < p_dis,
            "churned_90d": rng.random(n) < p_churn,
            "true_p_dissatisfied": p_dis,
            "true_p_churn": p_churn,
        }
    )


REASON_EFFECT = {
    "price": 0.6,
    "features": 0.2,
    "competition": -0.1,
    "support": 0.3,
    "moved": -2.0,
    "deceased": -4.0,
    "duplicate_account": -3.0,
    "other": -0.6,
}


def winback_outcomes(rng: np.random.Generator, n: int, pops: Populations, end: date) -> pa.Table:
    reason_code = rng.choice(len(CHURN_REASONS), size=n, p=[0.26, 0.18, 0.16, 0.12, 0.1, 0.03, 0.05, 0.1])
    ltv = np.round(rng.lognormal(6.3, 0.8, size=n), 2)
    tenure = rng.integers(1, 96, size=n)
    eng = np.round(rng.beta(3, 3, size=n), 3)
    sens = np.round(rng.beta(2, 3, size=n), 3)
    req = rng.poisson(1.2, size=n)
    comp = np.round(rng.beta(2, 4, size=n), 3)
    discount = rng.choice([20, 30, 50], size=n)
    effect = np.array([REASON_EFFECT[r] for r in CHURN_REASONS])[reason_code]
    p_ret = winback_p_returned(effect, ltv, tenure, eng)
    p_red = sigmoid(-1.0 + 3.0 * (sens - 0.4) + 0.25 * (req - 1.2) - 2.0 * (comp - 0.33) + 0.02 * (discount - 30))
    return pa.table(
        {
            "cid": pa.array(pops.shoppers + rng.integers(0, pops.churned, size=n), pa.int64()),
            "offer_date": date_array(day_number(end) - rng.integers(120, 720, size=n)),
            "lifetime_value_usd": ltv,
            "churn_reason": take_strings(CHURN_REASONS, reason_code),
            "subscription_tenure_months": pa.array(tenure, pa.int32()),
            "engagement_history": eng,
            "discount_sensitivity": sens,
            "feature_requests": pa.array(req, pa.int32()),
            "competitor_activity": comp,
            "discount_percent": pa.array(discount, pa.int32()),
            "returned": rng.random(n) < p_ret,
            "redeemed": rng.random(n) < p_red,
            "true_p_returned": p_ret,
            "true_p_redeemed": p_red,
        }
    )


def churn_outcomes(rng: np.random.Generator, n: int, pops: Populations, end: date) -> pa.Table:
    f = risk_features(rng, n)
    ltv = np.round(rng.lognormal(6.0, 0.9, size=n), 2)
    tenure = rng.integers(1, 96, size=n)
    sens = np.round(rng.beta(2, 3, size=n), 3)
    # Tuned so that, among customers with two or more churn signals, about 16 % / 44 % / 29 % score critical /
    # high / medium (the spec's 5k / 10k / 10k split of 25k eligible, within the noise of a fitted model).
    p_churn = at_risk_p_churn(
        f["engagement_score"], f["login_frequency"], f["purchase_frequency"], f["support_tickets"]
    )
    p_acc = sigmoid(-0.8 + 0.0008 * (ltv - 400) + 0.015 * (tenure - 48) + 3.0 * (sens - 0.4))
    return pa.table(
        {
            "cid": pa.array(rng.integers(0, pops.at_risk, size=n), pa.int64()),
            "snapshot_date": date_array(day_number(end) - 7 * rng.integers(14, 100, size=n)),
            "engagement_score": f["engagement_score"],
            "login_frequency": f["login_frequency"],
            "purchase_frequency": f["purchase_frequency"],
            "support_tickets": pa.array(f["support_tickets"], pa.int32()),
            "lifetime_value_usd": ltv,
            "subscription_tenure_months": pa.array(tenure, pa.int32()),
            "discount_sensitivity": sens,
            "churned_90d": rng.random(n) < p_churn,
            "accepted_offer": rng.random(n) < p_acc,
            "true_p_churn": p_churn,
            "true_p_accept": p_acc,
        }
    )
