"""Touch plan: timing in every marketplace's zone (DST included), delays, static and dynamic conditions, holdout."""

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from engage_assets.domain.config import load_programs
from engage_assets.domain.plan import MARKETPLACES, next_local_time, plan_touches, zone_for

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = {p.group: p for p in load_programs(ROOT / "program_configs")}
AS_OF = datetime(2026, 11, 22, tzinfo=UTC)


def offers(program, rows):
    """A minimal offers table: what the `offers` stage hands the planner."""
    subject = program.connector.subjectColumn
    base = {
        "customer_id": [],
        subject: [],
        "segment": [],
        "offer_type": [],
        "score": [],
        "holdout": [],
        "offer_value_usd": [],
        "marketplace": [],
        "time_zone": [],
    }
    for r in rows:
        for k in base:
            base[k].append(r.get(k))
    return pa.table(base)


def row(customer, segment, offer_type, score, marketplace="US", tz=None, holdout=False, **extra):
    return {
        "customer_id": customer,
        "order_id": f"O-{customer}",
        "segment": segment,
        "offer_type": offer_type,
        "score": score,
        "holdout": holdout,
        "offer_value_usd": 10.0,
        "marketplace": marketplace,
        "time_zone": tz,
        **extra,
    }


@pytest.mark.parametrize("marketplace", sorted(MARKETPLACES))
def test_email_goes_out_at_ten_local_in_every_marketplace(marketplace):
    program = PROGRAMS["churn_prevention"]
    plan = plan_touches(
        program,
        offers(program, [row("C1", "high", "standard", 0.7, marketplace)]),
        None,
        AS_OF,
        partition_key="2026-11-16",
    )
    email = next(r for r in plan.to_pylist() if r["channel"] == "email")
    local = datetime.fromtimestamp(email["dueAt"], UTC).astimezone(
        __import__("zoneinfo").ZoneInfo(MARKETPLACES[marketplace][0])
    )
    assert (local.hour, local.minute) == (10, 0)
    assert 0 <= email["dueAt"] - AS_OF.timestamp() < 86_400 + 3_600
    assert email["timeZone"] == MARKETPLACES[marketplace][0]


def test_ten_am_stays_ten_am_across_a_dst_change():
    # Europe/London leaves summer time on 2026-10-25: +3 days from 2026-10-23 10:00 BST is 10:00 GMT.
    due = next_local_time(datetime(2026, 10, 23, 5, tzinfo=UTC), "Europe/London", "10:00", days=3)
    assert datetime.fromtimestamp(due, UTC) == datetime(2026, 10, 26, 10, tzinfo=UTC)


def test_invalid_zone_falls_back_to_the_marketplace():
    assert zone_for("JP", "Mars/Olympus") == "Asia/Tokyo"
    assert zone_for("DE", "America/Chicago") == "America/Chicago"


def test_win_back_sms_three_days_later_phone_only_for_the_top_segment():
    program = PROGRAMS["win_back"]
    plan = plan_touches(
        program,
        offers(program, [row("C1", "premium", "premium", 0.9), row("C2", "basic", "basic", 0.2)]),
        None,
        AS_OF,
        partition_key="2026-10-05",
    ).to_pylist()
    by = {(r["customerId"], r["channelId"]): r for r in plan}
    assert set(by) == {("C1", "email"), ("C1", "sms"), ("C1", "phone"), ("C2", "email"), ("C2", "sms")}
    assert by[("C1", "sms")]["dueAt"] - by[("C1", "email")]["dueAt"] == 3 * 86_400
    assert by[("C1", "sms")]["conditions"] == '["not_converted"]'
    assert by[("C1", "sms")]["touchKey"] == "win-back-campaigns#C1#C1#+3d#sms"


def test_refund_sms_only_for_high_impact_and_holdout_marked():
    program = PROGRAMS["proactive_refunds"]
    plan = plan_touches(
        program,
        offers(program, [row("C1", "high", "full", 0.9, holdout=True), row("C2", "medium", "partial", 0.5)]),
        None,
        AS_OF,
        partition_key="2026-11-21",
    ).to_pylist()
    assert sorted((r["customerId"], r["channel"]) for r in plan) == [("C1", "email"), ("C1", "sms"), ("C2", "email")]
    assert all(r["holdout"] for r in plan if r["customerId"] == "C1")
    assert not any(r["holdout"] for r in plan if r["customerId"] == "C2")


def test_cart_delays_from_the_spec_fragment():
    program = PROGRAMS["churn_prevention"].model_copy(deep=True)
    from engage_assets.domain.config import Channel

    cart_channels = [
        Channel.model_validate(
            {
                "channelId": "email",
                "type": "email",
                "priority": 1,
                "config": {"templateId": "cart-reminder-v1", "delayMinutes": 60},
            }
        ),
        Channel.model_validate(
            {"channelId": "sms", "type": "sms", "priority": 2, "config": {"delayHours": 24, "onlyIfNotConverted": True}}
        ),
        Channel.model_validate(
            {
                "channelId": "push",
                "type": "push",
                "priority": 3,
                "config": {"delayHours": 72, "onlyIfNotConverted": True},
            }
        ),
    ]
    object.__setattr__(program, "channels", cart_channels)
    plan = plan_touches(
        program, offers(program, [row("C1", "high", "standard", 0.7)]), None, AS_OF, partition_key="2026-11-22-10:00"
    ).to_pylist()
    delays = {r["channel"]: r["dueAt"] - int(AS_OF.timestamp()) for r in plan}
    assert delays == {"email": 3_600, "sms": 86_400, "push": 3 * 86_400}


def local_of(epoch, zone):
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(zone))


# A plan clock just before each marketplace's DST changes of 2026 (None: no DST there).
DST_2026 = {
    "US": ["2026-03-06", "2026-10-30"],
    "UK": ["2026-03-27", "2026-10-23"],
    "DE": ["2026-03-27", "2026-10-23"],
    "FR": ["2026-03-27", "2026-10-23"],
    "AU": ["2026-04-03", "2026-10-02"],
    "BR": ["2026-02-13"],
    "JP": ["2026-03-27"],
    "IN": ["2026-03-27"],
}


@pytest.mark.parametrize("marketplace, day", [(m, d) for m, days in sorted(DST_2026.items()) for d in days])
def test_win_back_email_and_sms_at_ten_local_across_dst(marketplace, day):
    """Email at the next 10:00 local, SMS three local days later at 10:00 — across the zone's DST change."""
    program = PROGRAMS["win_back"]
    now = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
    plan = plan_touches(
        program, offers(program, [row("C1", "premium", "premium", 0.9, marketplace)]), None, now, partition_key=day
    ).to_pylist()
    by = {r["channelId"]: r for r in plan}
    zone = MARKETPLACES[marketplace][0]
    email, sms = local_of(by["email"]["dueAt"], zone), local_of(by["sms"]["dueAt"], zone)
    assert (email.hour, email.minute) == (10, 0) and (sms.hour, sms.minute) == (10, 0)
    assert by["email"]["dueAt"] > now.timestamp()
    assert (sms.date() - email.date()).days == 3
    assert by["phone"]["dueAt"] == int(now.timestamp())  # the call task now; scheduleWithin 48 h is its window


def test_spring_forward_gap_and_exact_ten():
    # US springs forward 2026-03-08 02:00; a 02:30 send time does not exist that day and lands at 03:30 EDT.
    due = next_local_time(datetime(2026, 3, 8, 5, tzinfo=UTC), "America/New_York", "02:30")
    assert local_of(due, "America/New_York").strftime("%H:%M") == "03:30"
    # At exactly 10:00 local the touch is due now, not tomorrow.
    ten = datetime(2026, 11, 23, 15, tzinfo=UTC)  # 10:00 EST
    assert next_local_time(ten, "America/New_York", "10:00") == int(ten.timestamp())


def test_customer_zone_and_marketplace_come_from_the_customers_table():
    program = PROGRAMS["churn_prevention"]
    offer_rows = offers(program, [row("C1", "high", "standard", 0.7, None), row("C2", "high", "standard", 0.7, None)])
    customers = pa.table(
        {"customer_id": ["C1", "C2"], "marketplace": ["AU", "JP"], "time_zone": ["Australia/Perth", None]}
    )
    plan = plan_touches(program, offer_rows, customers, AS_OF, partition_key="2026-11-16").to_pylist()
    email = {r["customerId"]: r for r in plan if r["channel"] == "email"}
    assert (email["C1"]["timeZone"], email["C1"]["marketplace"], email["C1"]["currency"]) == (
        "Australia/Perth",
        "AU",
        "AUD",
    )
    assert (email["C2"]["timeZone"], email["C2"]["currency"]) == ("Asia/Tokyo", "JPY")
    assert local_of(email["C1"]["dueAt"], "Australia/Perth").hour == 10


def test_a_pinned_zone_applies_to_everybody():
    program = PROGRAMS["churn_prevention"]
    raw = program.model_dump(by_alias=True, exclude_none=True)
    raw["channels"][0]["config"]["timezone"] = "UTC"
    pinned = type(program).model_validate(raw)
    plan = plan_touches(
        pinned, offers(pinned, [row("C1", "high", "standard", 0.7, "JP")]), None, AS_OF, partition_key="2026-11-16"
    ).to_pylist()
    email = next(r for r in plan if r["channel"] == "email")
    assert email["dueAt"] == int(AS_OF.replace(hour=10).timestamp())


def test_churn_phone_only_for_critical_in_app_for_everybody_now():
    program = PROGRAMS["churn_prevention"]
    plan = plan_touches(
        program,
        offers(program, [row("C1", "critical", "premium", 0.9), row("C2", "medium", "engagement", 0.5)]),
        None,
        AS_OF,
        partition_key="2026-11-16",
    ).to_pylist()
    assert sorted((r["customerId"], r["channel"]) for r in plan) == [
        ("C1", "email"),
        ("C1", "in-app"),
        ("C1", "phone"),
        ("C2", "email"),
        ("C2", "in-app"),
    ]
    by = {(r["customerId"], r["channel"]): r for r in plan}
    assert by[("C1", "phone")]["dueAt"] == by[("C1", "in-app")]["dueAt"] == int(AS_OF.timestamp())
    assert by[("C1", "phone")]["templateId"] == "retention-call-v2"
    assert by[("C1", "in-app")]["templateId"] == "retention-offer"
    assert all(r["expiresAt"] == int(AS_OF.timestamp()) + 30 * 86_400 for r in plan)
    assert all(r["conditions"] == "[]" for r in plan)


def test_disabled_channels_unknown_segments_and_empty_input_plan_nothing():
    program = PROGRAMS["win_back"]
    raw = program.model_dump(by_alias=True, exclude_none=True)
    for ch in raw["channels"]:
        ch["enabled"] = ch["channelId"] == "email"
    email_only = type(program).model_validate(raw)
    plan = plan_touches(
        email_only,
        offers(program, [row("C1", "premium", "premium", 0.9), row("C2", "gold", "gold", 0.9)]),
        None,
        AS_OF,
        partition_key="2026-11-02",
    )
    assert plan.column("touchKey").to_pylist() == ["win-back-campaigns#C1#C1#initial#email"]
    empty = plan_touches(program, offers(program, []), None, AS_OF, partition_key="2026-11-02")
    assert empty.num_rows == 0 and empty.schema == plan.schema


def test_holdout_touches_are_planned_and_marked():
    program = PROGRAMS["win_back"]
    plan = plan_touches(
        program,
        offers(program, [row("C1", "premium", "premium", 0.9, holdout=True)]),
        None,
        AS_OF,
        partition_key="2026-11-02",
    ).to_pylist()
    assert len(plan) == 3 and all(r["holdout"] for r in plan)


def cart_program():
    """The churn config with the abandoned-cart spec's channels (the cart program's YAML is not written yet)."""
    from engage_assets.domain.config import Channel

    program = PROGRAMS["churn_prevention"].model_copy(deep=True)
    channels = [
        Channel.model_validate(c)
        for c in (
            {
                "channelId": "email",
                "type": "email",
                "priority": 1,
                "config": {
                    "templateId": "cart-recovery-v3",
                    "delayMinutes": 60,
                    "subject": "You left something behind! {discountPercent}% off inside",
                    "includeDiscount": True,
                },
            },
            {
                "channelId": "sms",
                "type": "sms",
                "priority": 2,
                "config": {
                    "delayHours": 24,
                    "onlyIfNotConverted": True,
                    "message": "Hi {customerName}! Your cart is waiting. Use code {discountCode} for {discountPercent}% off. "
                    "Shop now: {cartLink}",
                },
            },
            {
                "channelId": "push",
                "type": "push",
                "priority": 3,
                "config": {
                    "delayHours": 72,
                    "title": "Last Chance!",
                    "body": "Your cart expires soon. {discountPercent}% off ends today!",
                    "onlyIfNotConverted": True,
                    "onlyIfCartAbandoned": True,
                },
            },
        )
    ]
    object.__setattr__(program, "channels", channels)
    return program


def test_cart_touches_count_from_the_cart_event():
    program = cart_program()
    event = int(AS_OF.timestamp()) - 600  # abandoned ten minutes before the plan ran
    rows = offers(program, [row("C1", "high", "standard", 0.7), row("C2", "high", "standard", 0.7)])
    rows = rows.append_column(
        "abandoned_at", pa.array([datetime.fromtimestamp(event, UTC), None], pa.timestamp("us", tz="UTC"))
    )
    plan = plan_touches(program, rows, None, AS_OF, partition_key="2026-11-22-10:00").to_pylist()
    c1 = {r["channel"]: r for r in plan if r["customerId"] == "C1"}
    assert {ch: r["dueAt"] - event for ch, r in c1.items()} == {"email": 3_600, "sms": 86_400, "push": 3 * 86_400}
    assert c1["push"]["conditions"] == '["not_converted", "cart_abandoned"]'
    assert c1["sms"]["touchId"] == "+1440m" and c1["email"]["touchId"] == "+60m"
    c2 = {r["channel"]: r for r in plan if r["customerId"] == "C2"}  # no event time: from the plan's clock
    assert c2["email"]["dueAt"] == int(AS_OF.timestamp()) + 3_600
    epoch = plan_touches(
        program,
        offers(program, [row("C1", "high", "standard", 0.7)]).append_column("event_at", pa.array([event], pa.int64())),
        None,
        AS_OF,
        partition_key="p",
    ).to_pylist()
    assert epoch[0]["dueAt"] == event + 3_600


def test_plan_is_vectorised_for_a_large_partition():
    import time

    import numpy as np

    program = PROGRAMS["proactive_refunds"]
    n = 100_000
    seg = np.array(["high", "medium", "low"])[np.arange(n) % 3]
    table = pa.table(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "order_id": [f"O{i}" for i in range(n)],
            "segment": seg,
            "offer_type": seg,
            "score": np.linspace(0, 1, n),
            "holdout": np.arange(n) % 10 == 0,
            "offer_value_usd": np.full(n, 10.0),
            "marketplace": np.array(sorted(MARKETPLACES))[np.arange(n) % 8],
            "time_zone": [None] * n,
        }
    )
    t0 = time.perf_counter()
    plan = plan_touches(program, table, None, AS_OF, partition_key="2026-11-21")
    assert time.perf_counter() - t0 < 5.0
    assert plan.num_rows == n + (n + 2) // 3  # email for all, SMS for the high segment
    assert len(set(plan.column("touchKey").to_pylist())) == plan.num_rows
