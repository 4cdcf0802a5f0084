"""Touch plan, templates and send-time conditions: timing in every marketplace's zone, conditions, escaping."""
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from engage_assets.config import load_programs
from engage_assets.delivery.conditions import CustomerState, consent_reason
from engage_assets.delivery.plan import MARKETPLACES, next_local_time, plan_touches, zone_for
from engage_assets.delivery.templates import (
    TemplateError,
    TemplateRenderer,
    discount_code,
    yaml_message_to_jinja,
)
from resources.warehouse import DuckDBWarehouse

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = {p.group: p for p in load_programs(ROOT / "program_configs")}
AS_OF = datetime(2026, 11, 22, tzinfo=timezone.utc)


def offers(program, rows):
    """A minimal offers table: what the `offers` stage hands the planner."""
    subject = program.connector.subjectColumn
    base = {"customer_id": [], subject: [], "segment": [], "offer_type": [], "score": [], "holdout": [],
            "offer_value_usd": [], "marketplace": [], "time_zone": []}
    for r in rows:
        for k in base:
            base[k].append(r.get(k))
    return pa.table(base)


def row(customer, segment, offer_type, score, marketplace="US", tz=None, holdout=False, **extra):
    return {"customer_id": customer, "order_id": f"O-{customer}", "segment": segment, "offer_type": offer_type,
            "score": score, "holdout": holdout, "offer_value_usd": 10.0, "marketplace": marketplace, "time_zone": tz,
            **extra}


@pytest.mark.parametrize("marketplace", sorted(MARKETPLACES))
def test_email_goes_out_at_ten_local_in_every_marketplace(marketplace):
    program = PROGRAMS["churn_prevention"]
    plan = plan_touches(program, offers(program, [row("C1", "high", "standard", 0.7, marketplace)]), None, AS_OF,
                        partition_key="2026-11-16")
    email = next(r for r in plan.to_pylist() if r["channel"] == "email")
    local = datetime.fromtimestamp(email["dueAt"], timezone.utc).astimezone(
        __import__("zoneinfo").ZoneInfo(MARKETPLACES[marketplace][0]))
    assert (local.hour, local.minute) == (10, 0)
    assert 0 <= email["dueAt"] - AS_OF.timestamp() < 86_400 + 3_600
    assert email["timeZone"] == MARKETPLACES[marketplace][0]


def test_ten_am_stays_ten_am_across_a_dst_change():
    # Europe/London leaves summer time on 2026-10-25: +3 days from 2026-10-23 10:00 BST is 10:00 GMT.
    due = next_local_time(datetime(2026, 10, 23, 5, tzinfo=timezone.utc), "Europe/London", "10:00", days=3)
    assert datetime.fromtimestamp(due, timezone.utc) == datetime(2026, 10, 26, 10, tzinfo=timezone.utc)


def test_invalid_zone_falls_back_to_the_marketplace():
    assert zone_for("JP", "Mars/Olympus") == "Asia/Tokyo"
    assert zone_for("DE", "America/Chicago") == "America/Chicago"


def test_win_back_sms_three_days_later_phone_only_for_the_top_segment():
    program = PROGRAMS["win_back"]
    plan = plan_touches(program, offers(program, [row("C1", "premium", "premium", 0.9),
                                                   row("C2", "basic", "basic", 0.2)]), None, AS_OF,
                        partition_key="2026-10-05").to_pylist()
    by = {(r["customerId"], r["channelId"]): r for r in plan}
    assert set(by) == {("C1", "email"), ("C1", "sms"), ("C1", "phone"), ("C2", "email"), ("C2", "sms")}
    assert by[("C1", "sms")]["dueAt"] - by[("C1", "email")]["dueAt"] == 3 * 86_400
    assert by[("C1", "sms")]["conditions"] == '["not_converted"]'
    assert by[("C1", "sms")]["touchKey"] == "win-back-campaigns#C1#C1#+3d#sms"


def test_refund_sms_only_for_high_impact_and_holdout_marked():
    program = PROGRAMS["proactive_refunds"]
    plan = plan_touches(program, offers(program, [row("C1", "high", "full", 0.9, holdout=True),
                                                   row("C2", "medium", "partial", 0.5)]), None, AS_OF,
                        partition_key="2026-11-21").to_pylist()
    assert sorted((r["customerId"], r["channel"]) for r in plan) == [("C1", "email"), ("C1", "sms"), ("C2", "email")]
    assert all(r["holdout"] for r in plan if r["customerId"] == "C1")
    assert not any(r["holdout"] for r in plan if r["customerId"] == "C2")


def test_cart_delays_from_the_spec_fragment():
    program = PROGRAMS["churn_prevention"].model_copy(deep=True)
    from engage_assets.config import Channel

    cart_channels = [
        Channel.model_validate({"channelId": "email", "type": "email", "priority": 1,
                                "config": {"templateId": "cart-reminder-v1", "delayMinutes": 60}}),
        Channel.model_validate({"channelId": "sms", "type": "sms", "priority": 2,
                                "config": {"delayHours": 24, "onlyIfNotConverted": True}}),
        Channel.model_validate({"channelId": "push", "type": "push", "priority": 3,
                                "config": {"delayHours": 72, "onlyIfNotConverted": True}}),
    ]
    object.__setattr__(program, "channels", cart_channels)
    plan = plan_touches(program, offers(program, [row("C1", "high", "standard", 0.7)]), None, AS_OF,
                        partition_key="2026-11-22-10:00").to_pylist()
    delays = {r["channel"]: r["dueAt"] - int(AS_OF.timestamp()) for r in plan}
    assert delays == {"email": 3_600, "sms": 86_400, "push": 3 * 86_400}


def test_templates_render_the_spec_texts_and_escape_html():
    renderer = TemplateRenderer()
    touch = {"programId": "churn-prevention", "customerId": "C1", "subjectId": "C1", "channel": "email",
             "channelId": "email", "templateId": "retention-offer-v4", "segment": "critical", "offerType": "premium",
             "offer": '{"discountPercent": 50, "duration": 6, "includeUpgrade": true, "riskLevel": "critical"}',
             "marketplace": "US", "currency": "USD"}
    msg = renderer.render(touch, {"customer_name": "<script>alert(1)</script> Doe"})
    assert msg.subject == "We'd love to keep you - Exclusive offer inside"
    assert "50% off for 6 months" in msg.text and "Free upgrade to Premium+" in msg.text
    assert "<script>" not in msg.html and "&lt;script&gt;" in msg.html
    assert discount_code("churn-prevention", "C1", "C1") in msg.text


def test_refund_amounts_in_the_orders_currency():
    renderer = TemplateRenderer()
    touch = {"programId": "proactive-refunds", "customerId": "C1", "subjectId": "O1", "channel": "email",
             "channelId": "email", "templateId": "proactive-refund-v2", "segment": "high", "offerType": "full",
             "offer": '{"refundType": "full", "refundAmount": 85.0, "creditAmount": 18.5}', "marketplace": "DE",
             "currency": "EUR"}
    msg = renderer.render(touch, {"customer_name": "Anna Schmidt"})
    assert msg.subject == "We're sorry - Full refund issued"
    assert "85,00\xa0€" in msg.text and "18,50\xa0€" in msg.text


def test_yaml_sms_text_uses_the_config_and_a_missing_field_fails_that_message():
    renderer = TemplateRenderer()
    touch = {"programId": "win-back-campaigns", "customerId": "C1", "subjectId": "C1", "channel": "sms",
             "channelId": "sms", "templateId": "sms-default", "offer": '{"discountPercent": 30}', "marketplace": "US"}
    text = renderer.render(touch, {"customer_name": "Sam Lee"}).text
    assert text.startswith("Hi Sam Lee! We miss you. Come back and save 30%. Use code ")
    assert "{" not in text
    with pytest.raises(TemplateError) as err:
        renderer.render(touch, {})  # no name on file
    assert err.value.reason == "missing_field:customerName"


def test_yaml_text_is_never_evaluated_as_a_template():
    renderer = TemplateRenderer(messages={("p", "sms"): "Hi {customerName} {{ 7*7 }} {% raw %}"})
    touch = {"programId": "p", "customerId": "C", "subjectId": "C", "channel": "sms", "channelId": "sms",
             "templateId": "x", "offer": "{}"}
    assert renderer.render(touch, {"customer_name": "{{ config }}"}).text == "Hi {{ config }} {{ 7*7 }} {% raw %}"
    assert "{{ customerName }}" in yaml_message_to_jinja("Hi {customerName}")


def test_sandbox_blocks_attribute_attacks(tmp_path):
    (tmp_path / "p" / "email").mkdir(parents=True)
    (tmp_path / "p" / "email" / "t.txt.j2").write_text("{{ offer.__class__.__mro__[1].__subclasses__() }}")
    renderer = TemplateRenderer(root=tmp_path, messages={})
    touch = {"programId": "p", "customerId": "C", "subjectId": "C", "channel": "email", "channelId": "email",
             "templateId": "t", "offer": "{}"}
    with pytest.raises(TemplateError) as err:
        renderer.render(touch, {"customer_name": "A"})
    assert err.value.reason in ("sandbox_violation", "missing_field:__class__") or "template" in err.value.reason


def test_consent_and_conversion_rechecked_at_send_time(tmp_path):
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("""CREATE TABLE marts.customers AS SELECT * FROM (VALUES
            ('C1', 'A B', 'a@example.com', '+15550000001', 'US', 'America/New_York', 'active', true, true, true, true, false),
            ('C2', 'C D', 'c@example.com', '+15550000002', 'US', 'America/New_York', 'active', true, false, true, true, false),
            ('C3', 'E F', 'e@example.com', '+15550000003', 'US', 'America/New_York', 'closed', true, true, true, true, false),
            ('C4', 'G H', 'g@example.com', '+15550000004', 'US', 'America/New_York', 'active', true, true, true, true, false))
            AS t(customer_id, customer_name, email, phone, marketplace, time_zone, account_status, email_opt_in,
                 sms_opt_in, push_opt_in, phone_opt_in, marketing_opt_out)""")
        con.execute("""CREATE TABLE marts.order_tracking AS SELECT * FROM (VALUES ('C4', DATE '2026-11-24'),
                       ('C1', DATE '2026-11-01')) AS t(customer_id, delivery_date)""")
        con.execute("CREATE TABLE marts.churned_customers AS SELECT 'C0' AS customer_id")
    state = CustomerState(warehouse=DuckDBWarehouse(path=str(path)))
    touches = [{"customerId": c, "channel": "sms", "partitionKey": "2026-11-22", "conditions": '["not_converted"]'}
               for c in ("C1", "C2", "C3", "C4", "C9")]
    assert state.recheck_many(touches, AS_OF) == [None, "opted_out:sms", "account_closed", "converted",
                                                  "unknown_customer"]
    assert consent_reason({"channel": "email"}, {"marketing_opt_out": True}) == "marketing_opt_out"
