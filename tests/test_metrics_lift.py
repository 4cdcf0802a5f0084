"""The holdout lift's 95 % interval, measured: over 50 seeds of the response simulator (a known process with a known
true lift per program), the interval `holdout_lift` computes covers the true lift in at least 90 % of the runs.  The
lift model's compiled SQL (and offer_conversions', which it reads) runs in DuckDB over each seed's simulated tables:
one `dbt compile`, not 50 builds."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engage_assets.demo.response_simulator import simulate_responses
from engage_assets.domain.history import ASSIGNMENT_SCHEMA, CONTACT_SCHEMA, offer_id
from tests.metrics_sql import MetricsWarehouse, compiled_models

SEEDS = range(50)
PER_PROGRAM = 1_200
HOLDOUT = 0.15
DAY = date(2026, 11, 2)
# program -> [(segment, offer_type, amount_usd, channels of a treated candidate)]
PROGRAMS = {
    "proactive-refunds": [("high", "full", 105.0, ("email", "sms")), ("low", "credit", 10.0, ("email",))],
    "churn-prevention": [
        ("critical", "premium", 180.0, ("email", "phone")),
        ("medium", "engagement", 15.0, ("email",)),
    ],
    "win-back-campaigns": [("premium", "premium", 250.0, ("email", "sms")), ("basic", "basic", 7.0, ("email",))],
    "abandoned-cart-recovery": [("discount_10pct", "discount_10pct", 12.0, ("email", "sms", "push"))],
}


@cache
def population() -> tuple[pa.Table, pa.Table]:
    """The four programs' candidates (disjoint customers), none held out yet, and the touches each would be sent
    (the partition's day, 10:00 onwards, a day apart per channel)."""
    assignments, contacts = [], []
    for p, (program, segments) in enumerate(PROGRAMS.items()):
        for i in range(PER_PROGRAM):
            segment, offer_type, amount, channels = segments[i % len(segments)]
            customer, subject = f"C{p}{i:06d}", f"S{i}"
            oid = offer_id(program, DAY.isoformat(), subject)
            common = {"offer_id": oid, "customer_id": customer, "program_id": program, "subject_id": subject}
            common |= {"partition_key": DAY.isoformat(), "segment": segment, "offer_type": offer_type}
            assignments.append({**common, "holdout": False, "amount_usd": amount, "assigned_date": DAY})
            for n, channel in enumerate(channels):
                sent = datetime.combine(DAY, datetime.min.time()) + timedelta(hours=10 + 24 * n, minutes=i % 60)
                contacts.append(
                    {
                        **common,
                        "touch_ref": f"T{p}-{i}-{n}",
                        "touch_id": str(n + 1),
                        "channel": channel,
                        "channel_id": channel,
                        "amount_usd": amount,
                        "provider_id": f"P{p}-{i}-{n}",
                        "sent_at": sent,
                        "contact_date": sent.date(),
                    }
                )
    return pa.Table.from_pylist(assignments, schema=ASSIGNMENT_SCHEMA), pa.Table.from_pylist(
        contacts, schema=CONTACT_SCHEMA
    )


def simulated_inputs(seed: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    """One seed's assignments (a random 15 % held out), the touches sent to the treated ones, and each customer's
    hidden propensity to convert (Beta(2, 4))."""
    assignments, contacts = population()
    rng = random.Random(seed)
    holdout = [rng.random() < HOLDOUT for _ in range(assignments.num_rows)]
    assignments = assignments.set_column(
        assignments.schema.get_field_index("holdout"), "holdout", pa.array(holdout, pa.bool_())
    )
    treated = assignments.filter(pc.invert(assignments.column("holdout"))).column("offer_id")
    contacts = contacts.filter(pc.is_in(contacts.column("offer_id"), value_set=treated))
    truth = pa.table(
        {
            "customer_id": assignments.column("customer_id"),
            "true_p": [rng.betavariate(2, 4) for _ in range(assignments.num_rows)],
        }
    )
    return assignments, contacts, truth


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lift")
    wh = MetricsWarehouse(folder / "wh", compiled_models(str(folder)))
    yield wh
    wh.close()


def test_lift_interval_covers_the_true_lift_in_at_least_90_percent_of_50_seeds(warehouse):
    covered, shifted_covered, excludes_zero, runs = 0, 0, 0, 0
    per_program: dict[str, int] = {}
    for seed in SEEDS:
        assignments, contacts, truth = simulated_inputs(seed)
        responses = simulate_responses(assignments, contacts, truth, seed=seed)
        warehouse.load("staging.stg_platform_assignments", assignments)
        warehouse.load("marts.contact_history", contacts)
        warehouse.load("staging.stg_conversions", responses.conversions)
        warehouse.build(only=("offer_conversions", "holdout_lift"))
        rows = warehouse.rows(
            "SELECT program_id, treated_n, control_n, lift, lift_ci_low, lift_ci_high FROM metrics.holdout_lift"
        )
        assert {r[0] for r in rows} == set(PROGRAMS)
        for program, treated_n, control_n, _lift, low, high in rows:
            true = responses.true_lift[program]
            assert (treated_n, control_n) == (true.treated_n, true.control_n)
            runs += 1
            hit = low <= true.true_lift <= high
            covered += hit
            per_program[program] = per_program.get(program, 0) + hit
            # The interval is not vacuous: it usually excludes "no effect", and misses a lift one width away.
            excludes_zero += low > 0
            shifted_covered += low <= true.true_lift + (high - low) <= high
    coverage = covered / runs
    print(
        f"\nholdout_lift 95 % interval coverage: {covered}/{runs} = {coverage:.1%}; per program (of 50): {per_program}"
    )
    assert coverage >= 0.90, per_program
    assert excludes_zero / runs > 0.5
    assert shifted_covered / runs < 0.1
