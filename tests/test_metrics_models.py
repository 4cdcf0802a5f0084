"""The metric models (dbt_project/models/metrics) on hand-made tables with known answers: attribution (last and first
touch, the window's edges, a conversion that names its program), funnel counts, the holdout lift's arithmetic, the
spec's metrics by name and the daily metrics.  Their compiled SQL runs in DuckDB (tests/metrics_sql.py)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import pyarrow as pa
import pytest

from tests.metrics_sql import MetricsWarehouse, compiled_models

D = date(2026, 11, 9)
T0 = datetime(2026, 11, 9, 10, 0)
CHURN, REFUNDS = "churn-prevention", "proactive-refunds"


def touch(ref: str, customer: str, program: str, channel: str, sent: datetime, segment: str = "high", offer=None):
    return {
        "touch_ref": ref,
        "offer_id": offer or f"{program}|{D}|{customer}",
        "customer_id": customer,
        "program_id": program,
        "partition_key": str(D),
        "channel": channel,
        "segment": segment,
        "provider_id": f"p-{ref}",
        "sent_at": sent,
        "contact_date": sent.date(),
    }


def conversion(cid: str, customer: str, at: datetime, value: float = 50.0, kind="order_placed", program=None):
    return {
        "conversion_id": cid,
        "customer_id": customer,
        "conversion_type": kind,
        "occurred_at": at,
        "value_usd": value,
        "program_id": program,
    }


def assignment(customer: str, program: str, segment: str, holdout: bool, amount=10.0, offer_type="credit"):
    return {
        "offer_id": f"{program}|{D}|{customer}",
        "customer_id": customer,
        "program_id": program,
        "partition_key": str(D),
        "subject_id": customer,
        "segment": segment,
        "offer_type": offer_type,
        "holdout": holdout,
        "amount_usd": amount,
        "assigned_date": D,
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return compiled_models(str(tmp_path_factory.mktemp("metrics_sql")))


@pytest.fixture
def wh(models, tmp_path):
    warehouse = MetricsWarehouse(tmp_path / "wh", models)
    yield warehouse
    warehouse.close()


def test_attribution_last_and_first_touch_within_the_window(wh):
    week = timedelta(days=7)
    wh.load(
        "marts.contact_history",
        [
            touch("A1", "A", CHURN, "email", T0),
            touch("A2", "A", CHURN, "sms", T0 + timedelta(days=2)),
            touch("B1", "B", CHURN, "email", T0),
            touch("C1", "C", CHURN, "email", T0),
            touch("E1", "E", CHURN, "email", T0),
            touch("E2", "E", REFUNDS, "email", T0 + timedelta(hours=1)),
        ],
    )
    wh.load(
        "staging.stg_conversions",
        [
            conversion("a", "A", T0 + timedelta(days=3)),  # both touches in the window
            conversion("b_in", "B", T0 + week - timedelta(seconds=1)),  # last second of the window
            conversion("b_out", "B", T0 + week),  # the window is half-open: not attributed
            conversion("c_same", "C", T0),  # sent and converted the same instant: attributed
            conversion("c_before", "C", T0 - timedelta(minutes=1)),  # before any touch: organic
            conversion("e", "E", T0 + timedelta(days=1), kind="code_redeemed", program=CHURN),  # names its program
            conversion("z", "Z", T0),  # never touched
            conversion("a_cart", "A", T0 + timedelta(days=3), kind="cart_purchased"),  # not a churn conversion
        ],
    )
    wh.build(only=("touch_attribution",))
    got = {
        (cid, model): (ref, channel)
        for cid, model, ref, channel in wh.rows(
            "SELECT conversion_id, attribution_model, touch_ref, channel FROM metrics.touch_attribution"
        )
    }
    assert got == {
        ("a", "last_touch"): ("A2", "sms"),
        ("a", "first_touch"): ("A1", "email"),
        ("b_in", "last_touch"): ("B1", "email"),
        ("b_in", "first_touch"): ("B1", "email"),
        ("c_same", "last_touch"): ("C1", "email"),
        ("c_same", "first_touch"): ("C1", "email"),
        # E's refund touch is later, but the redeemed code belongs to churn prevention.
        ("e", "last_touch"): ("E1", "email"),
        ("e", "first_touch"): ("E1", "email"),
    }
    row = wh.rows("SELECT value_usd, converted_at, touched_at FROM metrics.touch_attribution WHERE touch_ref = 'A2'")
    assert row == [(50.0, T0 + timedelta(days=3), T0 + timedelta(days=2))]


def test_the_attribution_window_is_the_dbt_var(tmp_path):
    models = compiled_models(str(tmp_path / "sql"), dbt_vars="{attribution_window_days: 2}")
    wh = MetricsWarehouse(tmp_path / "wh", models)
    wh.load(
        "marts.contact_history",
        [touch("A1", "A", CHURN, "email", T0), touch("A2", "A", CHURN, "sms", T0 + timedelta(days=2))],
    )
    wh.load("staging.stg_conversions", [conversion("a", "A", T0 + timedelta(days=3))])
    wh.build(only=("touch_attribution",))
    # With a 2-day window the e-mail sent 3 days before no longer counts: A2 is the first touch too.
    got = wh.rows("SELECT attribution_model, touch_ref FROM metrics.touch_attribution ORDER BY 1")
    wh.close()
    assert got == [("first_touch", "A2"), ("last_touch", "A2")]


def funnel_inputs(wh: MetricsWarehouse) -> None:
    """Churn prevention, segment high: 4 candidates (1 held out); 3 e-mails (3 delivered, 2 opened, 1 clicked) and
    1 SMS (failed); two treated customers (one with its code) and the held-out one convert."""
    wh.load(
        "staging.stg_platform_assignments",
        [assignment(c, CHURN, "high", holdout=c == "H") for c in ("A", "B", "C", "H")],
    )
    wh.load(
        "marts.contact_history",
        [touch(f"{c}1", c, CHURN, "email", T0) for c in ("A", "B", "C")] + [touch("A2", "A", CHURN, "sms", T0)],
    )
    events = [("A1", "delivered"), ("B1", "delivered"), ("C1", "delivered"), ("A1", "open"), ("B1", "open")]
    events += [("B1", "open"), ("B1", "click"), ("A2", "failed")]  # a repeated open counts once
    wh.load(
        "staging.stg_platform_outcomes",
        [
            {"event_id": f"e{i}", "touch_ref": ref, "program_id": CHURN, "event_type": kind}
            | {"occurred_at": T0 + timedelta(minutes=5 + i), "channel": "sms" if ref == "A2" else "email"}
            for i, (ref, kind) in enumerate(events)
        ],
    )
    # A's purchase used its code: the redemption is neither another conversion nor revenue.
    redeemed = conversion("A-code", "A", T0 + timedelta(days=1), value=30.0, kind="code_redeemed", program=CHURN)
    wh.load(
        "staging.stg_conversions",
        [conversion(c, c, T0 + timedelta(days=1), value=100.0) for c in ("A", "B", "H")] + [redeemed],
    )
    wh.load("marts.customers", [{"customer_id": c, "lifetime_value_usd": 400.0} for c in ("A", "B", "C", "H")])


def test_funnel_counts_per_program_segment_and_channel(wh):
    funnel_inputs(wh)
    wh.build()
    rows = {
        (seg, ch): rest
        for seg, ch, *rest in wh.rows(
            """SELECT segment, channel, candidates, offered, sent, delivered, opened, clicked, converted
               FROM metrics.program_funnel WHERE program_id = ?""",
            [CHURN],
        )
    }
    # candidates, offered, sent, delivered, opened, clicked, converted
    assert rows[("high", "all")] == [4, 3, 3, 3, 2, 1, 2]
    assert rows[("all", "all")] == [4, 3, 3, 3, 2, 1, 2]
    # A's conversion is last-touch attributed to A1 or A2 (same send time; ties go to the greater touch_ref: A2).
    assert rows[("high", "email")] == [4, 3, 3, 3, 2, 1, 1]
    assert rows[("high", "sms")] == [4, 3, 1, 0, 0, 0, 1]
    assert rows[("all", "email")] == rows[("high", "email")]
    value = "SELECT conversion_value_usd, redeemed, redeemed_value_usd FROM metrics.offer_conversions WHERE customer_id = 'A'"
    assert wh.rows(value) == [(100.0, True, 30.0)]
    # Every program has its (all, all) row; the others are empty.
    empty = wh.rows("SELECT program_id, candidates, sent FROM metrics.program_funnel WHERE program_id <> ?", [CHURN])
    assert sorted(empty) == [("abandoned-cart-recovery", 0, 0), (REFUNDS, 0, 0), ("win-back-campaigns", 0, 0)]


def test_holdout_lift_arithmetic_on_a_known_table(wh):
    # 100 treated, 30 converted; 50 held out, 10 converted.
    rows = [assignment(f"T{i}", REFUNDS, "high", holdout=False) for i in range(100)]
    rows += [assignment(f"H{i}", REFUNDS, "high", holdout=True) for i in range(50)]
    wh.load("staging.stg_platform_assignments", rows)
    converted = [f"T{i}" for i in range(30)] + [f"H{i}" for i in range(10)]
    # A conversion outside the window (15 days after the assigned date, nothing sent) does not count.
    late = [conversion("late", "T99", datetime(2026, 11, 24, 0, 0))]
    wh.load("staging.stg_conversions", [conversion(c, c, T0 + timedelta(days=2)) for c in converted] + late)
    wh.build(only=("offer_conversions", "holdout_lift"))
    (row,) = wh.rows("SELECT * FROM metrics.holdout_lift WHERE program_id = ?", [REFUNDS])
    _, tn, tc, tr, cn, cc, cr, lift, low, high = row
    assert (tn, tc, cn, cc) == (100, 30, 50, 10)
    assert tr == pytest.approx(0.3) and cr == pytest.approx(0.2) and lift == pytest.approx(0.1)
    half = 1.959964 * math.sqrt(0.3 * 0.7 / 100 + 0.2 * 0.8 / 50)
    assert (low, high) == (pytest.approx(0.1 - half), pytest.approx(0.1 + half))
    assert half == pytest.approx(0.142687, abs=1e-6)
    others = wh.rows("SELECT treated_n, control_n, lift FROM metrics.holdout_lift WHERE program_id <> ?", [REFUNDS])
    assert others == [(0, 0, None)] * 3  # no data: zero counts, no lift


def test_program_metrics_by_spec_name_beside_the_spec_figures(wh):
    funnel_inputs(wh)
    # And a call to C: phone has no provider receipts, so no delivery rate (not 0 %), but it costs.
    wh.con.register("calls", pa.Table.from_pylist([touch("C3", "C", CHURN, "phone", T0 + timedelta(hours=2))]))
    wh.con.execute("INSERT INTO marts.contact_history BY NAME SELECT * FROM calls")
    wh.build()
    metrics = {
        (name, dim): (value, spec, unit)
        for name, dim, value, spec, unit in wh.rows(
            "SELECT metric_name, dimension, metric_value, spec_figure, unit FROM metrics.program_metrics "
            "WHERE program_id = ?",
            [CHURN],
        )
    }
    assert metrics[("retention_rate", "risk_level=high")] == (pytest.approx(2 / 3), 0.20, "rate")
    assert metrics[("retention_rate", "all")] == (pytest.approx(2 / 3), 0.212, "rate")
    assert metrics[("retention_rate", "risk_level=critical")] == (None, 0.46, "rate")  # no candidates: no data
    assert metrics[("lift", "all")][0] == pytest.approx(2 / 3 - 1.0)
    # Cost: 3 e-mails, 1 SMS and 1 call at the seed's unit costs; revenue saved: two retained customers' $400 LTV.
    cost = 3 * 0.10 + 0.40 + 15.00
    assert metrics[("campaign_cost_usd", "all")] == (pytest.approx(cost), 75000.0, "usd")
    assert metrics[("revenue_saved_usd", "all")][0] == pytest.approx(800.0)
    assert metrics[("roi", "all")] == (pytest.approx(100 * 800.0 / cost), 2800.0, "percent")
    assert metrics[("cost_per_conversion", "all")][0] == pytest.approx(cost / 2)
    assert metrics[("open_rate", "channel=email")] == (pytest.approx(2 / 3), 0.40, "rate")
    assert metrics[("click_rate", "channel=email")] == (pytest.approx(1 / 3), 0.20, "rate")
    assert metrics[("delivery_rate", "channel=sms")][0] == 0.0
    assert metrics[("delivery_rate", "channel=phone")] == (None, 0.80, "rate")
    assert metrics[("conversion_rate", "channel=phone")][0] == 0.0
    # Every figure the spec asserts has its row, for every program (no data for the programs without candidates).
    missing = wh.rows(
        """SELECT s.program_id, s.metric_name, s.dimension FROM metrics.spec_metric_figures s
           ANTI JOIN metrics.program_metrics m USING (program_id, metric_name, dimension)"""
    )
    assert missing == []
    winback = wh.rows(
        "SELECT count(*), count(metric_value) FROM metrics.program_metrics WHERE program_id = 'win-back-campaigns'"
    )
    assert winback[0][0] > 10 and winback[0][1] == 0


def test_refund_metrics_issued_redeemed_and_satisfaction_by_impact_level(wh):
    rows = [assignment(f"H{i}", REFUNDS, "high", False, amount=105.0, offer_type="full") for i in range(2)]
    rows += [assignment(f"L{i}", REFUNDS, "low", False, amount=10.0) for i in range(4)]
    rows += [assignment("X", REFUNDS, "low", True, amount=10.0)]
    wh.load("staging.stg_platform_assignments", rows)
    at = T0 + timedelta(days=1)
    wh.load(
        "staging.stg_conversions",
        [conversion("h0", "H0", at), conversion("l0", "L0", at), conversion("l1", "L1", at)]
        + [conversion("l0r", "L0", at, value=10.0, kind="credit_redeemed", program=REFUNDS)],
    )
    wh.build()
    got = dict(
        (f"{name}|{dim}", value)
        for name, dim, value in wh.rows(
            "SELECT metric_name, dimension, metric_value FROM metrics.program_metrics WHERE program_id = ?", [REFUNDS]
        )
    )
    assert got["satisfaction_recovery_rate|impact_level=high"] == pytest.approx(0.5)
    assert got["satisfaction_recovery_rate|impact_level=low"] == pytest.approx(0.5)
    assert got["satisfaction_recovery_rate|impact_level=medium"] is None
    assert got["satisfaction_recovery_rate|all"] == pytest.approx(0.5)
    assert got["refunds_issued_usd|all"] == pytest.approx(2 * 105.0 + 4 * 10.0)
    assert got["credits_redeemed_usd|all"] == pytest.approx(10.0)
    assert got["credit_redemption_rate|all"] == pytest.approx(1 / 6)
    # Net cost: the full refunds paid and the credit redeemed (nothing was sent: no contact cost).
    assert got["campaign_cost_usd|all"] == pytest.approx(2 * 105.0 + 10.0)
    # Churn prevented: lift (3/6 − 0/1) × 6 treated.
    assert got["churn_prevented|all"] == pytest.approx(3.0)


def test_daily_metrics_count_each_day(wh):
    funnel_inputs(wh)
    wh.load(
        "marts.contact_history",
        [touch(f"{c}1", c, CHURN, "email", T0) for c in ("A", "B", "C")]
        + [touch("A2", "A", CHURN, "sms", T0 + timedelta(days=1))],
    )
    wh.build()
    rows = wh.rows(
        "SELECT metric_date, sent, delivered, opened, clicked, converted, cost_usd, revenue_usd, roi "
        "FROM metrics.program_daily_metrics WHERE program_id = ? ORDER BY metric_date",
        [CHURN],
    )
    day1, day2 = D, D + timedelta(days=1)
    assert [r[:6] for r in rows] == [(day1, 3, 3, 2, 1, 0), (day2, 1, 0, 0, 0, 2)]
    assert rows[0][6] == pytest.approx(0.30) and rows[1][6] == pytest.approx(0.40)
    assert rows[1][7] == pytest.approx(200.0) and rows[1][8] == pytest.approx(100 * 200.0 / 0.40)
    assert rows[0][8] == 0.0
