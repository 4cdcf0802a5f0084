"""Outcome webhooks (issue #11, item 2), over HTTP in the providers' own shapes.

SES events arrive as SNS messages signed the way SNS signs them: here with an RSA key and certificate made for the
test, the certificate served by a local HTTP server whose URL the verifier allow-lists (as production allow-lists
`https://sns.<region>.amazonaws.com/SimpleNotificationService-*.pem`); the same server answers the subscription
confirmation.  The delivery ledger (SQLite) holds sent touches whose provider ids the events name, so every outcome
joins to its touch; bounces and complaints reach the suppression list, unsubscribes the opt-outs delivery reads.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import duckdb
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from engage_assets.domain.outcomes import string_to_sign
from engage_assets.serving.app import create_app
from engage_assets.serving.auth import create_api_key
from engage_assets.serving.sns import SnsVerifier
from engage_assets.serving.webhooks import Webhooks
from resources.customer_state import CustomerState
from resources.delivery_ledger.base import idempotency_key
from resources.delivery_ledger.sqlite import DeliveryLedger
from resources.engagement.sqlite import SqliteEngagementStore
from resources.outcomes.sqlite import SqliteOutcomeStore
from resources.store.sqlite import SqliteCandidateStore
from resources.warehouse.duckdb import DuckDBWarehouse
from tests.delivery_support import contact, plan_table

P = "win-back-campaigns"
TOPIC = "arn:aws:sns:us-east-1:123456789012:engage-ses-events"
NOW = int(datetime(2026, 11, 21, 12, tzinfo=UTC).timestamp())
ADDRESS = "c1@example.com"
SES_URL = "/v1/webhooks/ses"


def make_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test.local")])
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class Provider:
    """SNS as the test plays it: serves its certificate, records subscription confirmations, signs messages."""

    def __init__(self) -> None:
        self.key, self.pem = make_certificate()
        self.confirmed: list[str] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/cert.pem":
                    body = provider.pem
                else:
                    provider.confirmed.append(self.path)
                    body = b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, message: dict[str, Any], version: str = "2", key: rsa.RSAPrivateKey | None = None) -> dict[str, Any]:
        message = {
            **message,
            "SignatureVersion": version,
            "SigningCertURL": message.get("SigningCertURL") or f"{self.base}/cert.pem",
        }
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = (key or self.key).sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def notification(self, event: dict[str, Any], message_id: str, **over: Any) -> dict[str, Any]:
        body = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": TOPIC,
            "Subject": "Amazon SES Email Event Notification",
            "Message": json.dumps(event),
            "Timestamp": "2026-11-21T12:00:00.000Z",
            "UnsubscribeURL": f"{self.base}/unsubscribe",
        }
        return self.sign({**body, **over})


def ses_event(kind: str, message_id: str, **block: Any) -> dict[str, Any]:
    key = {"Delivery": "delivery", "Open": "open", "Click": "click", "Bounce": "bounce", "Complaint": "complaint"}
    key |= {"Subscription": "subscription"}
    mail = {"timestamp": "2026-11-21T10:00:00.000Z", "messageId": message_id, "destination": [ADDRESS]}
    return {"eventType": kind, "mail": mail, key[kind]: {"timestamp": "2026-11-21T11:00:00.000Z", **block}}


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    yield p
    p.server.shutdown()


class Env:
    def __init__(self, client: TestClient, ledger: DeliveryLedger, outcomes: SqliteOutcomeStore, keys: dict[str, str]):
        self.client, self.ledger, self.outcomes, self.keys = client, ledger, outcomes, keys

    def post(self, body: Any, url: str = SES_URL, key: str = "ingest", raw: bytes | None = None, **headers: str):
        if key:
            headers.setdefault("X-API-Key", self.keys[key])
        content = raw if raw is not None else json.dumps(body).encode()
        return self.client.post(url, content=content, headers={"Content-Type": "text/plain", **headers})

    def suppressed(self, channel: str, address: str) -> str | None:
        with self.ledger.transaction() as conn:
            return self.ledger.suppressed_addresses(conn, channel, [address]).get(address)


@pytest.fixture
def env(tmp_path, provider):
    ledger = DeliveryLedger(tmp_path / "delivery.sqlite", suppression_key=b"k" * 32)
    rows = [{"customerId": "C1", "channel": "email"}, {"customerId": "C1", "channel": "sms"}]
    ledger.plan(plan_table(P, "2026-11-02", rows + [{"customerId": "C2", "channel": "email"}]), P, "2026-11-02", NOW)
    for key, provider_id in ((f"{P}#C1#s-C1#t1#email", "ses-1"), (f"{P}#C1#s-C1#t1#sms", "sms-1")):
        with ledger.transaction() as conn:
            assert ledger.claim(conn, key, "tok", NOW)
        assert ledger.mark_sent(key, "tok", provider_id, NOW)
    with ledger.transaction() as conn:
        assert ledger.claim(conn, f"{P}#C2#s-C2#t1#email", "tok", NOW)
    assert ledger.mark_sent(f"{P}#C2#s-C2#t1#email", "tok", "ses-2", NOW)
    outcomes = SqliteOutcomeStore(path=str(tmp_path / "outcomes.sqlite"))
    engagement = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    keys = {
        name: create_api_key(engagement, scopes, name, 1e4, 10_000)[1]
        for name, scopes in {"ingest": ["ingest"], "reader": ["read:*"]}.items()
    }
    verifier = SnsVerifier(
        allowed_topics=frozenset({TOPIC}),
        cert_url=re.compile(rf"^{re.escape(provider.base)}/cert\.pem$"),
        subscribe_url=re.compile(rf"^{re.escape(provider.base)}/confirm\?Action=ConfirmSubscription&"),
        clock=lambda: float(NOW),
    )
    hooks = Webhooks(outcomes, ledger, verifier, clock=lambda: float(NOW))
    app = create_app(SqliteCandidateStore(path=str(tmp_path / "store.sqlite")), engagement, webhooks=hooks)
    with TestClient(app) as client:
        yield Env(client, ledger, outcomes, keys)
    ledger.close()


def test_a_subscription_is_confirmed_only_when_signed(env, provider):
    confirm = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "sub-1",
        "Token": "token-1",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": f"{provider.base}/confirm?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=token-1",
        "Timestamp": "2026-11-21T12:00:00.000Z",
    }
    forged = provider.sign(confirm) | {"Token": "token-2"}
    assert env.post(forged).status_code == 403 and provider.confirmed == []
    r = env.post(provider.sign(confirm))
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
    assert provider.confirmed == [f"/confirm?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=token-1"]
    elsewhere = provider.sign(
        confirm | {"SubscribeURL": "https://attacker.example/confirm?Action=ConfirmSubscription&"}
    )
    assert env.post(elsewhere).status_code == 403 and len(provider.confirmed) == 1
    goodbye = provider.sign(confirm | {"Type": "UnsubscribeConfirmation", "MessageId": "sub-2"})
    assert env.post(goodbye).json()["status"] == "acknowledged"


def test_delivery_open_and_click_join_their_touch_and_a_retry_records_once(env, provider):
    for kind, block, sns_id in (
        ("Delivery", {"recipients": [ADDRESS]}, "n-1"),
        ("Open", {"userAgent": "x"}, "n-2"),
        ("Click", {"link": "https://shop.example.com/back?code=SECRET&c=C1"}, "n-3"),
    ):
        r = env.post(provider.notification(ses_event(kind, "ses-1", **block), sns_id))
        assert r.status_code == 200 and r.json() == {"status": "recorded", "recorded": 1, "duplicates": 0}
    again = env.post(provider.notification(ses_event("Open", "ses-1"), "n-2"))  # SNS retries the same MessageId
    assert again.json() == {"status": "duplicate", "recorded": 0, "duplicates": 1}
    rows = env.outcomes.for_provider_id("ses-1")
    assert [r["kind"] for r in rows] == ["delivered", "opened", "clicked"]
    touch_ref = idempotency_key(f"{P}#C1#s-C1#t1#email")
    assert {(r["customerId"], r["programId"], r["touchRef"], r["unmatched"]) for r in rows} == {
        ("C1", P, touch_ref, None)
    }
    assert rows[2]["detail"] == "shop.example.com/back"  # never the query
    # SignatureVersion 1 (SHA1withRSA) is accepted as well
    v1 = provider.sign(
        {k: v for k, v in provider.notification(ses_event("Open", "ses-2"), "n-4").items() if k != "Signature"}, "1"
    )
    assert env.post(v1).json()["status"] == "recorded"


def test_bounces_and_complaints_feed_the_suppression_list(env, provider):
    soft = ses_event(
        "Bounce",
        "ses-1",
        bounceType="Transient",
        bounceSubType="MailboxFull",
        bouncedRecipients=[{"emailAddress": ADDRESS}],
    )
    assert env.post(provider.notification(soft, "b-1")).status_code == 200
    assert env.suppressed("email", ADDRESS) is None  # a soft bounce is only recorded
    hard = ses_event(
        "Bounce",
        "ses-1",
        bounceType="Permanent",
        bounceSubType="General",
        bouncedRecipients=[{"emailAddress": ADDRESS}],
    )
    assert env.post(provider.notification(hard, "b-2")).status_code == 200
    assert env.suppressed("email", ADDRESS) == "bounce:Permanent:General"
    other = "c2@example.com"
    complaint = ses_event(
        "Complaint", "ses-2", complaintFeedbackType="abuse", complainedRecipients=[{"emailAddress": other}]
    )
    assert env.post(provider.notification(complaint, "b-3")).status_code == 200
    assert env.suppressed("email", other) == "complaint"
    (bounced,) = [r for r in env.outcomes.for_provider_id("ses-1") if r["eventId"] == "b-2"]
    assert bounced["permanent"] and bounced["customerId"] == "C1"


def customer_state(tmp_path, outcomes) -> CustomerState:
    path = tmp_path / "warehouse.duckdb"
    row = contact("C1")
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute(f"CREATE TABLE marts.customers AS SELECT {', '.join(f'? AS {k}' for k in row)}", list(row.values()))
        con.execute("ALTER TABLE marts.customers ADD COLUMN account_status VARCHAR DEFAULT 'active'")
    return CustomerState(warehouse=DuckDBWarehouse(path=str(path))).use_opt_outs(outcomes)


def test_unsubscribes_are_opt_outs_at_send_time(env, provider, tmp_path):
    state = customer_state(tmp_path, env.outcomes)
    touch = {"customerId": "C1", "channel": "email", "conditions": "[]", "programId": P, "subjectId": "s-C1"}
    now = datetime.fromtimestamp(NOW, UTC)
    assert state.recheck_many([touch], now) == [None]
    topic = {
        "newTopicPreferences": {
            "unsubscribeAll": False,
            "topicSubscriptionStatus": [{"topicName": "offers", "subscriptionStatus": "OptOut"}],
        }
    }
    assert env.post(provider.notification(ses_event("Subscription", "ses-1", **topic), "u-1")).status_code == 200
    assert env.outcomes.opted_out(["C1"]) == {"C1": {"email"}}
    assert state.recheck_many([touch], now) == ["opted_out:email"]
    assert state.recheck_many([touch | {"channel": "sms"}], now) == [None]
    everything = {"newTopicPreferences": {"unsubscribeAll": True}}
    assert env.post(provider.notification(ses_event("Subscription", "ses-1", **everything), "u-2")).status_code == 200
    assert state.recheck_many([touch | {"channel": "sms"}], now) == ["marketing_opt_out"]


def test_an_outcome_for_an_unknown_message_is_kept_aside(env, provider):
    r = env.post(provider.notification(ses_event("Delivery", "ses-unknown"), "x-1"))
    assert r.status_code == 200
    (kept,) = env.outcomes.for_provider_id("ses-unknown")
    assert kept["customerId"] is None and kept["unmatched"] == "unknown provider message id"
    # an unsubscribe nobody can tie to a customer still stops mail to its address
    stray = ses_event("Subscription", "ses-unknown", newTopicPreferences={"unsubscribeAll": True})
    assert env.post(provider.notification(stray, "x-2")).status_code == 200
    assert env.suppressed("email", ADDRESS) == "unsubscribed"
    # an SMS receipt naming an e-mail's message id does not join the e-mail touch
    receipt = {"notification": {"messageId": "ses-1", "timestamp": "2026-11-21 11:00:00.000"}, "status": "SUCCESS"}
    assert env.post(receipt, url="/v1/webhooks/receipts/sms").status_code == 200
    (crossed,) = [r for r in env.outcomes.for_provider_id("ses-1") if r["channel"] == "sms"]
    assert crossed["customerId"] is None and crossed["unmatched"] == "the provider id belongs to a email touch"


def receipt(message_id: str, status: str, response: str, destination: str = "+15550000001") -> dict[str, Any]:
    return {
        "notification": {"messageId": message_id, "timestamp": "2026-11-21 11:00:00.123"},
        "delivery": {"destination": destination, "providerResponse": response, "smsType": "Promotional"},
        "status": status,
    }


def test_sms_and_push_receipts(env):
    url = "/v1/webhooks/receipts/sms"
    ok = receipt("sms-1", "SUCCESS", "Message has been accepted by phone carrier")
    assert env.post(ok, url=url).json() == {"status": "recorded", "recorded": 1, "duplicates": 0}
    assert env.post([ok], url=url).json() == {"status": "duplicate", "recorded": 0, "duplicates": 1}
    stop = receipt("sms-1", "FAILURE", "Phone number is opted out")
    invalid = receipt("sms-9", "FAILURE", "Invalid phone number", destination="+15550000099")
    assert env.post([stop, invalid], url=url).json()["recorded"] == 2
    assert env.outcomes.opted_out(["C1"]) == {"C1": {"sms"}}
    assert env.suppressed("sms", "+15550000099") == "invalid_address"
    assert sorted(r["kind"] for r in env.outcomes.for_provider_id("sms-1")) == ["delivered", "unsubscribed"]
    push = {
        "notification": {"messageId": "push-1", "timestamp": "2026-11-21 11:00:00.000"},
        "delivery": {"statusCode": 200},
        "status": "SUCCESS",
    }
    assert env.post(push, url="/v1/webhooks/receipts/push").json()["recorded"] == 1


def test_bad_input_is_refused_with_a_reason_and_records_nothing(env, provider, caplog):
    good = provider.notification(ses_event("Delivery", "ses-1"), "bad-0")
    cases = [
        (good | {"Message": good["Message"].replace("Delivery", "Open")}, 403, "signature does not verify"),
        (provider.sign(good | {"TopicArn": "arn:aws:sns:us-east-1:123456789012:other"}), 403, "TopicArn"),
        (provider.sign(good | {"SigningCertURL": "https://evil.example/cert.pem"}), 403, "SigningCertURL"),
        (provider.sign(good, key=make_certificate()[0]), 403, "signature does not verify"),
        (good | {"Signature": "%%%"}, 403, "not base64"),
        (good | {"Type": "Telegram"}, 400, "unknown SNS message type"),
        (good | {"SignatureVersion": "3"}, 400, "SignatureVersion"),
        ({k: v for k, v in good.items() if k != "MessageId"}, 400, "MessageId"),
        (
            provider.notification({"eventType": "Teleport", "mail": {"messageId": "ses-1"}}, "bad-1"),
            400,
            "unknown SES event type",
        ),
        (provider.notification({"eventType": "Open"}, "bad-2"), 400, "no mail object"),
        (provider.sign(good | {"Message": "not json"}), 400, "not valid JSON"),
    ]
    with caplog.at_level(logging.INFO, logger="engage.serving"):
        for body, status, reason in cases:
            r = env.post(body)
            assert (r.status_code, reason in r.json()["detail"]) == (status, True), (reason, r.json())
        r = env.post(None, raw=b'{"Type": "Notification", ')
        assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
        r = env.post(None, url="/v1/webhooks/receipts/sms", raw=b"[{")
        assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
        bad_status = receipt("sms-1", "MAYBE", "?")
        assert (
            env.post([receipt("sms-1", "SUCCESS", "ok"), bad_status], url="/v1/webhooks/receipts/sms").status_code
            == 400
        )
        assert env.post({}, url="/v1/webhooks/receipts/fax").status_code == 422
        assert env.post(None, raw=b"x" * (257 * 1024)).status_code == 413
    assert env.outcomes.for_provider_id("ses-1") == [] and env.outcomes.for_provider_id("sms-1") == []
    assert ADDRESS not in caplog.text and "+1555" not in caplog.text


def test_the_webhooks_need_an_ingest_key(env, provider):
    body = provider.notification(ses_event("Delivery", "ses-1"), "k-1")
    assert env.post(body, key="").status_code == 401
    assert env.post(body, key="reader").status_code == 403
    basic = base64.b64encode(f"sns:{env.keys['ingest']}".encode()).decode()  # SNS: credentials in the URL
    assert env.post(body, key="", Authorization=f"Basic {basic}").status_code == 200
    wrong = base64.b64encode(b"sns:ek_0000000000000000_nottherightsecretatall").decode()
    assert env.post(body, key="", Authorization=f"Basic {wrong}").status_code == 401
