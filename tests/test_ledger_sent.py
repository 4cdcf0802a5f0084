"""Both delivery ledgers (SQLite, DynamoDB on a moto server) answer the two questions the platform's own history and
the outcome webhooks ask: which touches of a program's partitions were sent, and which sent touch a provider's
message id belongs to."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from resources.delivery_ledger.dynamodb import DynamoDbDeliveryLedger
from resources.delivery_ledger.sqlite import DeliveryLedger
from tests.delivery_support import plan_table

P = "abandoned-cart-recovery"
NOW = int(datetime(2026, 8, 10, 12, 0, tzinfo=UTC).timestamp())


@pytest.fixture(params=["sqlite", "dynamodb"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        led = DeliveryLedger(tmp_path / "delivery.sqlite")
        yield led
        led.close()
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        table = f"delivery-{uuid.uuid4().hex[:12]}"
        led = DynamoDbDeliveryLedger(table, region_name="us-east-1", endpoint_url=endpoint)
        led.create_table()
        yield led


def send(ledger, touch_key: str, provider_id: str) -> None:
    with ledger.transaction() as conn:
        assert ledger.claim(conn, touch_key, "tok", NOW)
    assert ledger.mark_sent(touch_key, "tok", provider_id, NOW + 1)


def test_sent_touches_of_a_partition_range_and_the_touch_of_a_provider_id(ledger):
    day1, day1_cart, day2 = "2026-08-01", "2026-08-01T10:00:00Z~cart-1", "2026-08-02"
    for part, cust in ((day1, "a"), (day1_cart, "b"), (day2, "c")):
        rows = [{"customerId": cust, "channel": ch} for ch in ("email", "sms")]
        ledger.plan(plan_table(P, part, rows), P, part, NOW)
    ledger.plan(plan_table("other", day1, [{"customerId": "z", "channel": "email"}]), "other", day1, NOW)
    send(ledger, f"{P}#a#s-a#t1#email", "ses-1")
    send(ledger, f"{P}#b#s-b#t1#sms", "sns-2")
    send(ledger, f"{P}#c#s-c#t1#email", "ses-3")
    send(ledger, "other#z#s-z#t1#email", "ses-4")
    with ledger.transaction() as conn:  # claimed, never sent: not a contact yet
        assert ledger.claim(conn, f"{P}#a#s-a#t1#sms", "tok2", NOW)

    day = ledger.sent_touches(P, "2026-08-01", "2026-08-02")
    assert [(r.partition_key, r.customer_id, r.channel, r.provider_id, r.sent_at) for r in day] == [
        (day1, "a", "email", "ses-1", NOW + 1),
        (day1_cart, "b", "sms", "sns-2", NOW + 1),
    ]
    assert [r.customer_id for r in ledger.sent_touches(P, "2026-08-01", "2026-08-03")] == ["a", "b", "c"]
    assert ledger.sent_touches(P, "2026-08-03", "2026-08-01") == []

    found = ledger.find_sent("sns-2")
    assert found is not None and (found.touch_key, found.customer_id, found.channel) == (
        f"{P}#b#s-b#t1#sms",
        "b",
        "sms",
    )
    assert ledger.find_sent("nobody") is None and ledger.find_sent("") is None
    ledger.erase_customer("b")
    assert ledger.find_sent("sns-2") is None
