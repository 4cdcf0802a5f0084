"""The customer-response simulator's pure process (`engage_assets.demo.response_simulator.simulate_responses`):
deterministic per seed, stable per row, rates that follow its parameters, and a true lift the measured one estimates."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import pyarrow as pa
import pytest

from engage_assets.demo.response_simulator import (
    ResponseParams,
    logit,
    sigmoid,
    simulate_responses,
)
from engage_assets.domain.history import ASSIGNMENT_SCHEMA, CONTACT_SCHEMA, offer_id

PROGRAM = "churn-prevention"
DAY = date(2026, 11, 9)
SENT = datetime(2026, 11, 9, 10, 0)


def population(n: int, holdout_every: int = 10, channel: str = "email", segment: str = "high"):
    """n assignments of one program (every `holdout_every`-th held out), one sent touch per treated one, and a
    truth of 0.5 (neutral) for everyone."""
    assignments, contacts = [], []
    for i in range(n):
        oid = offer_id(PROGRAM, DAY.isoformat(), f"s{i}")
        held = i % holdout_every == 0
        assignments.append(
            {
                "offer_id": oid,
                "customer_id": f"c{i}",
                "program_id": PROGRAM,
                "partition_key": DAY.isoformat(),
                "subject_id": f"s{i}",
                "segment": segment,
                "offer_type": "standard",
                "holdout": held,
                "amount_usd": 25.0,
                "assigned_date": DAY,
                "loaded_at": None,
            }
        )
        if not held:
            contacts.append(
                {
                    "touch_ref": f"t{i}",
                    "offer_id": oid,
                    "customer_id": f"c{i}",
                    "program_id": PROGRAM,
                    "partition_key": DAY.isoformat(),
                    "subject_id": f"s{i}",
                    "touch_id": "1",
                    "channel": channel,
                    "channel_id": channel,
                    "segment": segment,
                    "offer_type": "standard",
                    "provider_id": f"p{i}",
                    "sent_at": SENT,
                    "contact_date": DAY,
                }
            )
    truth = pa.table({"customer_id": [f"c{i}" for i in range(n)], "true_p": [0.5] * n})
    return (
        pa.Table.from_pylist(assignments, schema=ASSIGNMENT_SCHEMA),
        pa.Table.from_pylist(contacts, schema=CONTACT_SCHEMA),
        truth,
    )


def test_deterministic_per_seed_and_stable_per_row():
    a, c, t = population(2_000)
    first = simulate_responses(a, c, t, seed=7)
    again = simulate_responses(a, c, t, seed=7)
    assert first.outcomes.equals(again.outcomes) and first.conversions.equals(again.conversions)
    assert first.true_lift == again.true_lift
    other = simulate_responses(a, c, t, seed=8)
    assert not other.conversions.equals(first.conversions)
    # Half the touches and assignments: the rows they keep draw exactly what they drew with all of them.
    half = simulate_responses(a.slice(0, 1_000), c.slice(0, 900), t, seed=7)
    kept = {r["event_id"]: r for r in first.outcomes.to_pylist()}
    assert all(kept[r["event_id"]] == r for r in half.outcomes.to_pylist())
    assert set(half.conversions.column("conversion_id").to_pylist()) <= set(
        first.conversions.column("conversion_id").to_pylist()
    )
    assert set(first.outcomes.column("simulated").to_pylist()) == {True}
    assert set(first.conversions.column("simulated").to_pylist()) == {True}


def _rate(table: pa.Table, column: str, value: str) -> int:
    return sum(1 for v in table.column(column).to_pylist() if v == value)


def test_rates_follow_the_process():
    n = 20_000
    params = ResponseParams()
    a, c, t = population(n, holdout_every=2)
    out = simulate_responses(a, c, t, seed=3, params=params)
    sent = c.num_rows
    tolerance = 4  # standard errors

    def close(observed: int, trials: int, p: float) -> None:
        se = math.sqrt(p * (1 - p) / trials)
        assert abs(observed / trials - p) < tolerance * se + 1e-9, (observed / trials, p)

    bounces = _rate(out.outcomes, "event_type", "bounce")
    close(bounces, sent, params.bounce_rate)
    delivered = _rate(out.outcomes, "event_type", "delivered")
    assert delivered + bounces == sent
    close(_rate(out.outcomes, "event_type", "open"), delivered, params.open_rate["email"])
    # Conversions: a neutral truth and the `high` segment's shift give p0; treated and delivered add the standard
    # offer's and e-mail's effects.
    p0 = sigmoid(logit(params.base_rate[PROGRAM]) + params.segment_shift["high"])
    p1 = sigmoid(logit(p0) + params.offer_effect["standard"] + params.channel_effect["email"])
    orders = [r for r in out.conversions.to_pylist() if r["conversion_type"] == "order_placed"]
    held = {r["customer_id"] for r in a.to_pylist() if r["holdout"]}
    control = sum(1 for r in orders if r["customer_id"] in held)
    close(control, len(held), p0)
    truth = out.true_lift[PROGRAM]
    assert truth.control_rate == pytest.approx(p0)
    expected_treated = (delivered * p1 + bounces * p0) / (n - len(held))
    assert truth.treated_rate == pytest.approx(expected_treated)
    close(len(orders) - control, n - len(held), truth.treated_rate)
    # Redemptions only for treated converters, with the program and the code the business system knows.
    redeemed = [r for r in out.conversions.to_pylist() if r["conversion_type"] == "credit_redeemed"]
    assert redeemed and all(r["customer_id"] not in held and r["program_id"] == PROGRAM for r in redeemed)
    # Held-out customers are never contacted: no events name them.
    assert not held & set(out.outcomes.column("customer_id").to_pylist())


def test_conversions_fall_in_the_window():
    a, c, t = population(3_000)
    out = simulate_responses(a, c, t, seed=11)
    start = datetime.combine(DAY, datetime.min.time())
    for r in out.conversions.to_pylist():
        assert start <= r["occurred_at"] <= SENT + timedelta(minutes=2, days=7)


def test_measured_lift_interval_covers_the_true_lift():
    """What the holdout_lift model measures (treated rate − control rate, 95 % normal interval) covers the true lift
    in at least 90 % of 50 seeds."""
    a, c, t = population(4_000, holdout_every=5)
    held = {r["customer_id"] for r in a.to_pylist() if r["holdout"]}
    treated_n, control_n = a.num_rows - len(held), len(held)
    covered = 0
    for seed in range(50):
        out = simulate_responses(a, c, t, seed=seed)
        converted = {r["customer_id"] for r in out.conversions.to_pylist() if r["conversion_type"] == "order_placed"}
        rt, rc = len(converted - held) / treated_n, len(converted & held) / control_n
        se = math.sqrt(rt * (1 - rt) / treated_n + rc * (1 - rc) / control_n)
        lift = out.true_lift[PROGRAM].true_lift
        covered += rt - rc - 1.96 * se <= lift <= rt - rc + 1.96 * se
    assert covered >= 45


def test_truth_moves_rates():
    a, c, _ = population(6_000)
    low = pa.table({"customer_id": [f"c{i}" for i in range(6_000)], "true_p": [0.2] * 6_000})
    high = pa.table({"customer_id": [f"c{i}" for i in range(6_000)], "true_p": [0.8] * 6_000})
    lo, hi = simulate_responses(a, c, low, seed=1), simulate_responses(a, c, high, seed=1)
    assert hi.true_lift[PROGRAM].control_rate > lo.true_lift[PROGRAM].control_rate
    assert _rate(hi.outcomes, "event_type", "open") > _rate(lo.outcomes, "event_type", "open")
