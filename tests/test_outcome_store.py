"""One contract for both outcome stores (SQLite; DynamoDB on a moto server): an outcome is recorded once per event id
(providers retry), kept aside with a reason when its touch is unknown, found by the provider's message id, never
with an address; opt-outs per customer and channel; GDPR erasure of both."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest

from engage_assets.domain.outcomes import Outcome
from resources.outcomes.base import TouchRef
from resources.outcomes.dynamodb import DynamoDbOutcomeStore
from resources.outcomes.sqlite import SqliteOutcomeStore

NOW = 1_790_000_000


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteOutcomeStore(path=str(tmp_path / "outcomes.sqlite"))
        yield s
        s.close()
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        s = DynamoDbOutcomeStore(
            table_name=f"outcomes-{uuid.uuid4().hex[:10]}", region_name="us-east-1", endpoint_url=endpoint
        )
        s.create_table()
        yield s


def stored_text(store) -> str:
    if isinstance(store, DynamoDbOutcomeStore):
        return json.dumps(store.client().scan(TableName=store.table_name)["Items"])
    with sqlite3.connect(store.path) as c:
        return "\n".join(c.iterdump())


def test_outcomes_are_recorded_once_joined_or_kept_aside(store):
    touch = TouchRef("ref-1", "win-back-campaigns", "C1")
    bounce = Outcome(
        "sns-1", "ses", "ses-1", "email", "bounced", NOW, "Permanent:General", True, addresses=("a@x.org",)
    )
    assert store.record(bounce, touch, NOW) is True
    assert store.record(bounce, touch, NOW + 5) is False  # the provider's retry
    opened = Outcome("sns-2", "ses", "ses-1", "email", "opened", NOW - 10)
    assert store.record(opened, touch, NOW)
    stray = Outcome("sns-3", "ses", "ses-9", "email", "delivered", NOW)
    assert store.record(stray, None, NOW)
    rows = store.for_provider_id("ses-1")
    assert [(r["eventId"], r["kind"], r["customerId"], r["touchRef"], r["unmatched"]) for r in rows] == [
        ("sns-2", "opened", "C1", "ref-1", None),
        ("sns-1", "bounced", "C1", "ref-1", None),
    ]
    assert rows[1]["permanent"] is True and rows[1]["detail"] == "Permanent:General" and rows[1]["recordedAt"] == NOW
    (kept,) = store.for_provider_id("ses-9")
    assert kept["customerId"] is None and kept["unmatched"] == "unknown provider message id"
    assert store.for_provider_id("nothing") == []
    assert "a@x.org" not in stored_text(store)


def test_opt_outs_and_erasure(store):
    store.add_opt_out("C1", "email", NOW)
    store.add_opt_out("C1", "email", NOW + 1)
    store.add_opt_out("C1", "sms", NOW)
    store.add_opt_out("C2", "marketing", NOW)
    assert store.opted_out(["C1", "C2", "C3"]) == {"C1": {"email", "sms"}, "C2": {"marketing"}}
    assert store.opted_out([]) == {}
    store.record(Outcome("e1", "ses", "m1", "email", "delivered", NOW), TouchRef("r", "p", "C1"), NOW)
    store.record(Outcome("e2", "ses", "m2", "email", "delivered", NOW), TouchRef("r2", "p", "C2"), NOW)
    assert store.erase_customers(["C1"]) >= 2  # rows (SQLite) or items (DynamoDB)
    assert store.opted_out(["C1", "C2"]) == {"C2": {"marketing"}}
    assert store.for_provider_id("m1") == [] and len(store.for_provider_id("m2")) == 1
    assert store.erase_customers([]) == 0
