"""Channels against real endpoints: SES v2 and SNS on a moto server (wire protocol), SMTP against the aiosmtpd
capture server, the outbox, and call tasks / inbox entries through the SQLite engagement store."""

from __future__ import annotations

import email
import email.policy
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from engage_assets.demo.smtp_capture import capture_path, running_capture
from resources.channels.aws_errors import aws_call
from resources.channels.base import OutboundMessage, PermanentSendError, TransientSendError
from resources.channels.engagement_channels import CallTaskChannel, InboxChannel
from resources.channels.outbox import OutboxSmsChannel
from resources.channels.ses import SesEmailChannel
from resources.channels.smtp import SmtpEmailChannel
from resources.channels.sns import SnsPushChannel, SnsSmsChannel
from resources.engagement.sqlite import SqliteEngagementStore


def msg(channel="email", to="ann@example.com", key=None, **kw):
    return OutboundMessage(
        key or uuid.uuid4().hex,
        "touchhash",
        "churn-prevention",
        "c1",
        channel,
        to,
        kw.pop("subject", "We'd love to keep you – 50% off"),
        kw.pop("text", "Hi Ann,\nOffer inside."),
        kw.pop("html", "<p>Hi Ann &amp; team</p>"),
        now=1_786_363_200,
        **kw,
    )


def test_smtp_capture_readable_eml_with_headers(tmp_path):
    with running_capture(tmp_path / "mail") as (handler, port):
        session = SmtpEmailChannel(port=port, capture_dir=str(tmp_path / "mail")).open()
        m = msg(key="a" * 40)
        session.send(m)
        session.send(msg(key="b" * 40))  # same connection, second message
        session.close()
    path = capture_path(tmp_path / "mail", "churn-prevention", "a" * 40)
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "We'd love to keep you – 50% off" and parsed["To"] == "ann@example.com"
    assert parsed["X-Engage-Idempotency-Key"] == "a" * 40
    assert parsed.get_body(("plain",)).get_content().startswith("Hi Ann")
    assert "&amp;" in parsed.get_body(("html",)).get_content()
    assert handler.received == 2


def test_smtp_connection_refused_is_transient(tmp_path):
    from engage_assets.demo.smtp_capture import free_port

    with pytest.raises(TransientSendError) as e:
        SmtpEmailChannel(port=free_port()).open().send(msg())
    assert e.value.code == "smtp_connect" and "ann@" not in str(e.value)


def test_ses_send_raw_with_idempotency_header(moto_endpoint):
    sesv2 = boto3.client("sesv2", endpoint_url=moto_endpoint, region_name="us-east-1")
    sesv2.create_email_identity(EmailIdentity="offers@engage.example")
    channel = SesEmailChannel(endpoint_url=moto_endpoint, region_name="us-east-1", from_address="offers@engage.example")
    key = uuid.uuid4().hex
    message_id = channel.open().send(msg(key=key))
    assert message_id
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    sent = [m for m in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages if m.id == message_id]
    assert sent and f"X-Engage-Idempotency-Key: {key}" in sent[0].raw_data
    # an unverified sender is refused: permanent, not retried
    bad = SesEmailChannel(endpoint_url=moto_endpoint, region_name="us-east-1", from_address="x@unverified.example")
    with pytest.raises(PermanentSendError):
        bad.open().send(msg())


def test_sns_sms_and_push(moto_endpoint):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    sms = SnsSmsChannel(endpoint_url=moto_endpoint, region_name="us-east-1").open()
    mid = sms.send(msg("sms", to="+15551230001", subject=None, html=None, text="Hi Ann! Use code CART10."))
    assert sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sms_messages[mid] == (
        "+15551230001",
        "Hi Ann! Use code CART10.",
    )
    topic = boto3.client("sns", endpoint_url=moto_endpoint, region_name="us-east-1").create_topic(
        Name=f"push-{uuid.uuid4().hex[:8]}"
    )["TopicArn"]
    assert (
        SnsPushChannel(endpoint_url=moto_endpoint, region_name="us-east-1", topic_arn=topic)
        .open()
        .send(msg("push", to=None, subject="Last Chance!", html=None, text="10% off ends today"))
    )


def test_aws_error_classification():
    def raiser(code, status):
        def fn():
            raise ClientError(
                {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Publish"
            )

        return fn

    for code, status in (("Throttling", 400), ("TooManyRequestsException", 429), ("InternalError", 500)):
        with pytest.raises(TransientSendError):
            aws_call(raiser(code, status))
    with pytest.raises(PermanentSendError) as e:
        aws_call(raiser("InvalidParameter", 400))
    assert e.value.bounce


def test_sns_unreachable_is_transient():
    from engage_assets.demo.smtp_capture import free_port

    channel = SnsSmsChannel(endpoint_url=f"http://127.0.0.1:{free_port()}", region_name="us-east-1")
    with pytest.raises(TransientSendError):
        channel.open().send(msg("sms", to="+15551230001"))


def test_outbox_dedupes_by_key(tmp_path):
    session = OutboxSmsChannel(root=str(tmp_path)).open()
    m = msg("sms", to="+15551230001", key="k" * 40)
    assert session.lookup(m) is None
    assert session.send(m) == session.send(m)
    assert session.lookup(m) and session.conn.execute("SELECT count(*), max(received) FROM messages").fetchone() == (
        1,
        2,
    )


def test_phone_and_in_app_through_engagement_store(tmp_path):
    store = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    touch = {
        "dueAt": 1_786_363_200,
        "segment": "critical",
        "score": 0.93,
        "templateId": "retention-offer-v4",
        "offer": '{"discount": 50, "duration": 6}',
    }
    call = CallTaskChannel(store).open()
    m = msg(
        "phone",
        to="+15551230001",
        key="t" * 32,
        touch=touch,
        channel_config={"scriptId": "retention-call-v2", "callType": "account-manager", "scheduleWithin": "24h"},
    )
    assert call.lookup(m) is None
    assert call.send(m) == call.send(m) == "t" * 32  # idempotent by task id
    task = store.get_call_task("t" * 32)
    assert task["dueAt"] == touch["dueAt"] + 24 * 3600 and task["scriptId"] == "retention-call-v2"
    assert task["offer"]["discount"] == 50
    inbox = InboxChannel(store).open()
    m2 = msg(
        "in-app",
        to=None,
        key="i" * 32,
        touch=touch,
        channel_config={"messageType": "retention-offer", "displayDuration": 7},
    )
    assert inbox.send(m2) == inbox.send(m2)
    entry = store.get_inbox_message("i" * 32)
    assert entry["displayUntil"] - entry["displayFrom"] == 7 * 86_400 and entry["messageType"] == "retention-offer"
    # an erased customer gets no task: suppressed, not failed
    store.delete_customer("c9")
    gone = msg("phone", key="g" * 32, touch=touch)
    gone.customer_id = "c9"
    with pytest.raises(PermanentSendError) as e:
        call.send(gone)
    assert e.value.suppress
