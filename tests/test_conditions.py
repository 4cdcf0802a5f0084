"""Send-time state: consent, account status, expiry and conversion re-checked against a fresh warehouse."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pytest

from engage_assets.domain.conditions import consent_reason
from resources.customer_state import ConversionSource, CustomerState
from resources.warehouse.duckdb import DuckDBWarehouse

AS_OF = datetime(2026, 11, 22, tzinfo=UTC)
NOW = int(AS_OF.timestamp())


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("""CREATE TABLE marts.customers AS SELECT * FROM (VALUES
            ('C1', 'A B', 'a@example.com', '+15550000001', 'US', 'America/New_York', 'active', true, true, true, true, false),
            ('C2', 'C D', 'c@example.com', '+15550000002', 'DE', 'Europe/Berlin', 'active', true, false, true, true, false),
            ('C3', 'E F', 'e@example.com', '+15550000003', 'US', 'America/New_York', 'closed', true, true, true, true, false),
            ('C4', 'G H', 'g@example.com', '+15550000004', 'JP', 'Asia/Tokyo', 'active', true, true, true, true, false),
            ('C5', 'I J', 'i@example.com', '+15550000005', 'US', 'America/New_York', 'active', true, true, true, true, true),
            ('C6', 'K L', 'k@example.com', '+15550000006', 'US', 'America/New_York', 'active', false, true, false, false, false),
            ('C7', 'M N', 'm@example.com', '+15550000007', 'UK', 'Europe/London', 'active', true, true, true, true, false))
            AS t(customer_id, customer_name, email, phone, marketplace, time_zone, account_status, email_opt_in,
                 sms_opt_in, push_opt_in, phone_opt_in, marketing_opt_out)""")
        # The business's conversions (marts.conversions): C4 ordered after the plan, C1 before it; C7 reactivated.
        con.execute("""CREATE TABLE marts.conversions AS SELECT * FROM (VALUES
                       ('C4', TIMESTAMP '2026-11-24 10:00', 'order_placed'),
                       ('C1', TIMESTAMP '2026-11-01 10:00', 'order_placed'),
                       ('C7', TIMESTAMP '2026-11-23 09:00', 'subscription_reactivated'))
                       AS t(customer_id, occurred_at, conversion_type)""")
    return DuckDBWarehouse(path=str(path))


def t(customer, channel="sms", conditions='["not_converted"]', expires=NOW + 86_400, partition="2026-11-22"):
    return {
        "customerId": customer,
        "channel": channel,
        "partitionKey": partition,
        "conditions": conditions,
        "expiresAt": expires,
    }


def test_every_reason(warehouse):
    state = CustomerState(warehouse=warehouse)
    touches = [
        t("C1"),
        t("C2"),
        t("C3"),
        t("C4"),
        t("C5"),
        t("C6", "email"),
        t("C6", "push"),
        t("C6", "phone"),
        t("C7"),
        t("C9"),
        t("C1", expires=NOW),
        t("C4", conditions='["cart_abandoned"]'),
        t("C4", conditions="[]"),
        t("C1", "in-app"),
    ]
    assert state.recheck_many(touches, AS_OF) == [
        None,
        "opted_out:sms",
        "account_closed",
        "converted",
        "marketing_opt_out",
        "opted_out:email",
        "opted_out:push",
        "opted_out:phone",
        "converted",
        "unknown_customer",
        "offer_expired",
        "cart_not_abandoned",
        None,
        None,
    ]


def test_a_conversion_before_the_plan_does_not_count(warehouse):
    # C1's order was delivered on 2026-11-01, before the 2026-11-22 plan; with a 2026-10-26 plan it counts.
    state = CustomerState(warehouse=warehouse)
    assert state.recheck_many([t("C1"), t("C1", partition="2026-10-26")], AS_OF) == [None, "converted"]


def test_one_contacts_query_and_one_conversion_lookup_per_batch(warehouse):
    class Counting:
        def __init__(self):
            self.calls = []

        def converted_since(self, ids, since):
            self.calls.append((len(ids), since))
            return {"C2"}

    source = Counting()
    state = CustomerState(warehouse=warehouse).use_conversions(source)
    queries = []
    original = warehouse.query_arrow
    object.__setattr__(warehouse, "query_arrow", lambda *a, **k: queries.append(a[0]) or original(*a, **k))
    try:
        touches = [t(c, "email") for c in ("C1", "C2", "C4", "C7")] * 50
        reasons = state.recheck_many(touches, AS_OF)
    finally:
        object.__delattr__(warehouse, "query_arrow")
    assert len(queries) == 1 and len(source.calls) == 1 and source.calls[0] == (4, date(2026, 11, 22))
    assert reasons[:4] == [None, "converted", None, None]  # conversions come from the injected source only


def test_conversion_sources_are_checked_for_the_protocol(warehouse):
    assert isinstance(object.__new__(type("S", (), {"converted_since": lambda self, i, s: set()})), ConversionSource)
    with pytest.raises(TypeError):
        CustomerState(warehouse=warehouse).use_conversions(object())  # type: ignore[arg-type]


def test_contacts_carry_locale_currency_and_consent(warehouse):
    contacts = CustomerState(warehouse=warehouse).contacts(["C2", "C4", "C9"])
    assert set(contacts) == {"C2", "C4"}
    assert (contacts["C2"]["currency"], contacts["C2"]["time_zone"], contacts["C2"]["sms_opt_in"]) == (
        "EUR",
        "Europe/Berlin",
        False,
    )
    assert contacts["C4"]["currency"] == "JPY" and contacts["C4"]["email"] == "g@example.com"


def test_a_customer_outside_the_page_is_looked_up_without_losing_the_page(warehouse):
    state = CustomerState(warehouse=warehouse)
    state.contacts(["C1"])
    assert state.recheck(t("C4"), AS_OF) == "converted"
    assert state.recheck(t("C1"), AS_OF) is None


def test_consent_reason_alone():
    assert consent_reason({"channel": "email"}, {"marketing_opt_out": True}) == "marketing_opt_out"
    assert consent_reason({"channel": "sms"}, {"account_status": "suspended"}) == "account_closed"


def test_erased_customers_get_no_contact_row_and_recheck_erased(warehouse, tmp_path):
    from resources.engagement.sqlite import SqliteEngagementStore

    store = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    store.delete_customer("C1")
    store.delete_customer("C4")
    state = CustomerState(warehouse=warehouse).use_erasures(store)
    assert set(state.contacts(["C1", "C2", "C7"])) == {"C2", "C7"}  # no address of an erased customer
    # C4 was not in the page: it is looked up alone, and found erased too
    assert [state.recheck(x, AS_OF) for x in (t("C1"), t("C2", "email"), t("C4"))] == ["erased", None, "erased"]
    assert CustomerState(warehouse=warehouse).recheck_many([t("C1")], AS_OF) == [None]  # without erasures: sent
    with pytest.raises(TypeError):
        CustomerState(warehouse=warehouse).use_erasures(object())
