"""The suppression list keeps keyed hashes (HMAC-SHA256 under a secret from the settings), not plain SHA-256 of
addresses, in both ledgers; a version-1 list (plain hashes) is migrated: the SQLite file on open (schema version),
each entry re-keyed when its address is next looked up, so no listed address is ever contacted because of it."""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import stat
import uuid

import pytest
from pydantic import ValidationError

from engage_assets.settings import PROD_REQUIRED, Settings, suppression_key
from resources.delivery_ledger.dynamodb import DynamoDbDeliveryLedger
from resources.delivery_ledger.sqlite import DeliveryLedger
from resources.delivery_ledger.suppression import WrongSuppressionKey

NOW = 1_786_363_200
KEY, OTHER_KEY = b"k" * 32, b"o" * 32
PHONE, EMAIL = "+15550000001", "Old@Example.com"


def plain(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def keyed(address: str, key: bytes = KEY) -> str:
    return hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()


@pytest.fixture(params=["sqlite", "dynamodb"])
def open_ledger(request, tmp_path):
    """ledger(key) on one fresh store."""
    if request.param == "sqlite":
        yield lambda key: DeliveryLedger(tmp_path / "delivery.sqlite", suppression_key=key)
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        table = f"delivery-{uuid.uuid4().hex[:12]}"
        DynamoDbDeliveryLedger(table, region_name="us-east-1", endpoint_url=endpoint).create_table()
        yield lambda key: DynamoDbDeliveryLedger(
            table, region_name="us-east-1", endpoint_url=endpoint, suppression_key=key
        )


def stored(ledger) -> str:
    if isinstance(ledger, DynamoDbDeliveryLedger):
        return str(ledger.client().scan(TableName=ledger.table_name)["Items"])
    with sqlite3.connect(ledger.path) as c:
        return "\n".join(c.iterdump())


def listed(ledger, channel: str, *addresses: str) -> dict[str, str]:
    with ledger.transaction() as conn:
        return ledger.suppressed_addresses(conn, channel, list(addresses))


def test_hashes_are_keyed_by_the_secret(open_ledger):
    ledger = open_ledger(KEY)
    ledger.add_suppression("sms", PHONE, "bounce:invalid_number", NOW)
    text = stored(ledger)
    assert keyed(PHONE) in text and plain(PHONE) not in text and "5550000001" not in text
    assert listed(ledger, "sms", PHONE) == {PHONE: "bounce:invalid_number"}
    # Under another key every entry would be unreadable (every listed address contacted again): refused instead.
    other = open_ledger(OTHER_KEY)
    with pytest.raises(WrongSuppressionKey):
        listed(other, "sms", PHONE)
    with pytest.raises(WrongSuppressionKey):
        other.add_suppression("sms", "+15550000002", "complaint", NOW)
    assert listed(open_ledger(KEY), "sms", PHONE) == {PHONE: "bounce:invalid_number"}


V1_LIST = """CREATE TABLE suppression_list (channel TEXT NOT NULL, address_hash TEXT NOT NULL, reason TEXT NOT NULL,
    created_at INTEGER NOT NULL, PRIMARY KEY (channel, address_hash)) WITHOUT ROWID"""


def test_a_version_1_sqlite_ledger_migrates_on_open(tmp_path):
    path = tmp_path / "delivery.sqlite"
    with sqlite3.connect(path) as v1:  # the list as version 1 wrote it: plain SHA-256, no schema version
        v1.execute(V1_LIST)
        v1.execute("INSERT INTO suppression_list VALUES ('sms', ?, 'bounce:invalid_number', ?)", (plain(PHONE), NOW))
        v1.execute("INSERT INTO suppression_list VALUES ('email', ?, 'complaint', ?)", (plain(EMAIL), NOW))
    ledger = DeliveryLedger(path, suppression_key=KEY)
    assert ledger.legacy_count() == 2
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 2
    # Still suppressed after the upgrade (the listed phone is never texted again), and re-keyed on the way.
    assert listed(ledger, "sms", PHONE, "+15550000002") == {PHONE: "bounce:invalid_number"}
    assert ledger.legacy_count() == 1
    assert plain(PHONE) not in stored(ledger) and keyed(PHONE) in stored(ledger)
    assert listed(DeliveryLedger(path, suppression_key=KEY), "sms", PHONE) == {PHONE: "bounce:invalid_number"}
    assert listed(ledger, "email", " old@example.COM") == {"old@example.com": "complaint"}
    assert ledger.legacy_count() == 0 and plain(EMAIL) not in stored(ledger)


def test_a_version_1_dynamodb_item_is_rekeyed_when_looked_up(moto_endpoint):
    table = f"delivery-{uuid.uuid4().hex[:12]}"
    ledger = DynamoDbDeliveryLedger(table, region_name="us-east-1", endpoint_url=moto_endpoint, suppression_key=KEY)
    ledger.create_table()
    item = {"pk": {"S": f"S#sms#{plain(PHONE)}"}, "sk": {"S": "S"}, "reason": {"S": "bounce:invalid_number"}}
    ledger.client().put_item(TableName=table, Item={**item, "createdAt": {"N": str(NOW)}})
    assert listed(ledger, "sms", PHONE, "+15550000002") == {PHONE: "bounce:invalid_number"}
    text = stored(ledger)
    assert plain(PHONE) not in text and f"S#sms#k:{keyed(PHONE)}" in text and str(NOW) in text
    assert listed(ledger, "sms", PHONE) == {PHONE: "bounce:invalid_number"}


def test_the_key_comes_from_the_settings(tmp_path, monkeypatch):
    local = Settings(env="local", home=tmp_path)
    made = suppression_key(local)  # none set: a random key, made once, owner-only
    assert len(made) == 64 and suppression_key(local) == made
    assert stat.S_IMODE(os.stat(tmp_path / "suppression.key").st_mode) == 0o600
    assert suppression_key(Settings(env="local", home=tmp_path, suppression_key="s" * 32)) == b"s" * 32
    assert "s" * 32 not in repr(Settings(env="local", home=tmp_path, suppression_key="s" * 32))
    with pytest.raises(ValidationError):
        Settings(env="local", home=tmp_path, suppression_key="short")
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    monkeypatch.setenv("ENGAGE_ENV", "prod")
    for name, var in PROD_REQUIRED.items():
        if name != "suppression_key":
            monkeypatch.setenv(var, f"x-{name}")
    with pytest.raises(ValidationError, match="ENGAGE_SUPPRESSION_KEY"):
        Settings()  # production without the key fails at load, naming it
    monkeypatch.setenv("ENGAGE_SUPPRESSION_KEY", "p" * 40)
    assert suppression_key() == b"p" * 40
    assert DeliveryLedger(tmp_path / "d.sqlite").hashes.key() == b"p" * 40  # what the ledgers use by default
