"""The right answers and the right reasons (#12, item 6) on hand-made batches: NULL-safe validation, rules that
never reject for a value they do not need, thresholds at their bound, and one specific reason per cause."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from engage_assets.assets.program.scoring import imputed_features
from engage_assets.domain import pipeline
from engage_assets.domain.config import load_programs
from engage_assets.domain.filters import columns_judged, compile_chain
from engage_assets.domain.models import train_model
from engage_assets.domain.sources import KNOWN_CUSTOMER, UNKNOWN_CUSTOMER_REASON, split_invalid
from engage_assets.settings import PROJECT_ROOT
from tests.test_pipeline_units import CHURN_BASE, refund_row

PROGRAMS = {p.programId: p for p in load_programs(PROJECT_ROOT / "program_configs")}
REFUNDS = PROGRAMS["proactive-refunds"]
CHURN = PROGRAMS["churn-prevention"]
REQUIRED = REFUNDS.connector.requiredColumns
JUDGED = columns_judged(REFUNDS.ordered_filters())

SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("order_id", pa.string()),
        ("delivery_date", pa.date32()),
        ("delay_days", pa.int32()),
        ("order_value_usd", pa.float64()),
        ("item_condition", pa.string()),
        ("customer_complaints", pa.int32()),
        ("refundable", pa.bool_()),
        ("account_status", pa.string()),
        ("lifetime_value_usd", pa.float64()),
        ("order_frequency", pa.int64()),
        ("marketing_opt_out", pa.bool_()),
        ("days_since_program_offer", pa.int64()),
        ("program_offers_365d", pa.int32()),
        ("all_offers_91d", pa.int32()),
        (KNOWN_CUSTOMER, pa.bool_()),
    ]
)


def row(customer_id: str, **over):
    """A refund order issue of a known customer that passes every filter, with `over` changed."""
    return {**refund_row(customer_id=customer_id, order_id="O-" + customer_id), KNOWN_CUSTOMER: True, **over}


def source_then_chain(rows):
    """The source stage's validation, then the filter chain: {customer_id: (stage, reason)} and the eligible ids."""
    valid, invalid = split_invalid(pa.Table.from_pylist(rows, SCHEMA), REQUIRED, JUDGED)
    outcome = {r["customer_id"]: ("source", r["rejection_reason"]) for r in invalid.to_pylist()}
    result = pipeline.apply_filter_chain(REFUNDS, valid)
    outcome |= {r["customer_id"]: (r["filter_id"], r["reason"]) for r in result.rejected.to_pylist()}
    return outcome, sorted(result.table.column("customer_id").to_pylist()), result.removed


def test_a_null_required_number_is_invalid_not_passed():
    """A currency without an FX rate leaves order_value_usd NULL: the row must not pass (pc.or_ let it through)."""
    rejected, eligible, _ = source_then_chain(
        [row("ok"), row("no-fx", order_value_usd=None), row("nan", order_value_usd=float("nan"))]
    )
    assert eligible == ["ok"]
    assert rejected["no-fx"] == ("source", "order_value_usd is null or not a valid number")
    assert rejected["nan"] == ("source", "order_value_usd is null or not a valid number")


def test_an_unknown_customer_says_so():
    rows = [row("ghost", account_status=None, lifetime_value_usd=None, order_frequency=None, **{KNOWN_CUSTOMER: False})]
    rejected, eligible, _ = source_then_chain(rows)
    assert eligible == [] and rejected["ghost"] == ("source", UNKNOWN_CUSTOMER_REASON)


def test_a_damaged_order_needs_no_delay_and_an_undamaged_one_does():
    rows = [
        row("damaged-no-delay", delay_days=None, item_condition="damaged"),
        row("damaged-on-time", delay_days=0, item_condition="damaged"),
        row("good-no-delay", delay_days=None),
        row("good-on-time", delay_days=0),
        row("nothing-known", delay_days=None, item_condition=None),
        row("short-unknown-condition", delay_days=1, item_condition=None),
        row("late-unknown-condition", delay_days=9, item_condition=None),
    ]
    rejected, eligible, removed = source_then_chain(rows)
    assert eligible == ["damaged-no-delay", "damaged-on-time", "late-unknown-condition"]
    assert rejected == {
        "good-no-delay": ("issue-severity", "delay_days unknown (not an integer) and item not damaged"),
        "good-on-time": ("issue-severity", "delayed 2 days or less and item not damaged"),
        "nothing-known": ("issue-severity", "delay_days and item_condition unknown"),
        "short-unknown-condition": ("issue-severity", "delayed 2 days or less and item_condition unknown"),
    }
    assert removed["issue-severity"] == 4


def test_thresholds_at_their_bound():
    """minDelayDays is strict (> 2, the spec's '> 2 days'); minLifetimeValue and minOrderFrequency are inclusive
    (the YAML's 200 and 2 keep exactly 200 and 2), as the parameters' descriptions say."""
    rows = [
        row("delay-2", delay_days=2),
        row("delay-3", delay_days=3),
        row("ltv-200", lifetime_value_usd=200.0),
        row("ltv-199.99", lifetime_value_usd=199.99),
        row("ltv-nan", lifetime_value_usd=float("nan")),
        row("ltv-null", lifetime_value_usd=None),
        row("freq-2", order_frequency=2),
        row("freq-1", order_frequency=1),
        row("freq-null", order_frequency=None),
    ]
    rejected, eligible, _ = source_then_chain(rows)
    assert eligible == ["delay-3", "freq-2", "ltv-200"]
    assert rejected["delay-2"] == ("issue-severity", "delayed 2 days or less and item not damaged")
    assert rejected["ltv-199.99"] == ("customer-value", "lifetime value below $200")
    assert rejected["ltv-nan"] == ("customer-value", "lifetime value unknown")  # NaN >= 200 is true in SQL
    assert rejected["ltv-null"] == ("customer-value", "lifetime value unknown")
    assert rejected["freq-1"] == ("customer-value", "fewer than 2 orders in the last year")
    assert rejected["freq-null"] == ("customer-value", "order frequency unknown")


def test_every_eligibility_cause_has_its_own_reason_and_counts_stay_right():
    rows = [
        row("ok"),
        row("offer-90-days-ago", days_since_program_offer=90),
        row("offer-91-days-ago", days_since_program_offer=91),
        row("opted-out", marketing_opt_out=True),
        row("final-sale", refundable=False),
        row("refundable-unknown", refundable=None),
        row("complained", customer_complaints=2),
        row("complaints-unknown", customer_complaints=None),
        row("suspended", account_status="suspended"),
        row("status-unknown", account_status=None),
        row("capped", program_offers_365d=2),
    ]
    rejected, eligible, removed = source_then_chain(rows)
    assert eligible == ["offer-91-days-ago", "ok"]
    assert rejected == {
        "offer-90-days-ago": ("eligibility", "offer from this program in the last 90 days"),
        "opted-out": ("eligibility", "opted out of marketing"),
        "final-sale": ("eligibility", "order not refundable"),
        "refundable-unknown": ("eligibility", "refundability unknown"),
        "complained": ("issue-severity", "customer already complained about the order"),
        "complaints-unknown": ("issue-severity", "complaints unknown"),
        "suspended": ("trust", "account status not in ['active']"),
        "status-unknown": ("trust", "account status unknown"),
        "capped": ("frequency-cap", "frequency cap: 2 or more offers from this program in the last 365 days"),
    }
    assert dict(removed) == {
        "trust": 2,
        "issue-severity": 2,
        "customer-value": 0,
        "eligibility": 4,
        "frequency-cap": 1,
    }


def test_the_first_failing_filter_wins_and_counts_once():
    rejected, _, removed = source_then_chain([row("both", account_status="closed", delay_days=0)])
    assert rejected["both"][0] == "trust" and sum(removed.values()) == 1


def test_churn_signals_unknown_only_reject_when_they_are_needed():
    base = {**CHURN_BASE, "engagement_change": -0.5, "login_frequency": 1.0}  # two signals
    rows = [
        {**base, "customer_id": "two-known-one-unknown", "days_since_last_purchase": None},
        {**base, "customer_id": "one-known-one-unknown", "login_frequency": None},
        {**base, "customer_id": "one-known", "login_frequency": 5.0},
    ]
    schema = pa.schema(
        [(k, pa.float64() if isinstance(v, float) or v is None else pa.array([v]).type) for k, v in base.items()]
    )
    result = pipeline.apply_filter_chain(CHURN, pa.Table.from_pylist(rows, schema))
    assert result.table.column("customer_id").to_pylist() == ["two-known-one-unknown"]
    reasons = {r["customer_id"]: r["reason"] for r in result.rejected.to_pylist()}
    assert reasons == {
        "one-known-one-unknown": "fewer than 2 churn signals known (signal inputs unknown)",
        "one-known": "fewer than 2 churn signals",
    }


@pytest.mark.parametrize("filter_id", ["issue-severity", "eligibility", "frequency-cap"])
def test_a_filter_summary_lists_its_specific_reasons(filter_id):
    available = set(SCHEMA.names)
    compiled = {f.filter_id: f for f in compile_chain(REFUNDS.ordered_filters(), available)}[filter_id]
    assert all(c.reason in compiled.reason for c in compiled.checks) and len(compiled.checks) >= 1


def test_a_feature_the_rules_did_not_need_is_imputed_by_the_model_and_counted():
    """The damaged order with an unparseable delay reaches scoring: the model imputes its delay (median, with a
    missing flag) instead of failing, and the scored stage's metadata says how many rows were imputed."""
    rng = np.random.default_rng(0)
    delay = rng.integers(0, 15, 400)
    training = pd.DataFrame(
        {
            "delay_days": delay,
            "order_value_usd": rng.uniform(10, 200, 400),
            "dissatisfied": delay + rng.normal(0, 3, 400) > 7,
        }
    )
    model = train_model("m", "p", ["delay_days", "order_value_usd"], training, "dissatisfied")
    rows = [row("late"), row("damaged-no-delay", delay_days=None, item_condition="damaged")]
    _, eligible, _ = source_then_chain(rows)
    batch = pa.Table.from_pylist(rows, SCHEMA)
    assert eligible == ["damaged-no-delay", "late"]
    scores = model.pipeline.predict_proba(batch.select(["delay_days", "order_value_usd"]).to_pandas())[:, 1]
    assert np.isfinite(scores).all()
    assert imputed_features(batch, ["delay_days", "order_value_usd"]) == "delay_days=1"
    assert imputed_features(batch, ["order_value_usd"]) == "none"
