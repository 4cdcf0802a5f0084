"""Delivery channels: one interface per channel, a local and a production implementation (ARCHITECTURE §7).

| channel | local                                   | production                     |
|---------|-----------------------------------------|--------------------------------|
| email   | `SmtpEmailChannel` → the capture server | `SesEmailChannel` (SES v2)     |
| sms     | `OutboxSmsChannel` (SQLite outbox)      | `SnsSmsChannel` (SNS publish)  |
| push    | `OutboxPushChannel` (SQLite outbox)     | `SnsPushChannel` (SNS publish) |
| phone   | `CallTaskChannel` → EngagementStore call tasks (SQLite locally, DynamoDB in production)  |
| in-app  | `InboxChannel` → EngagementStore inbox entries                                           |

A channel resource opens a `ChannelSession` (one SMTP connection reused for many messages, one boto3 client) that
sends `OutboundMessage`s.  Every message carries the ledger's idempotency key (an e-mail header, an SNS message
attribute, the call task's / inbox entry's id).  Errors are classified, never carrying an address:
`TransientSendError` (SMTP 4xx, connection refused, AWS throttling / 5xx: retried with backoff) and
`PermanentSendError` (SMTP 5xx, invalid parameter: not retried; `bounce` puts the address on the suppression list).

`dedupes_by_key`: whether the receiving side drops a second message with the same idempotency key (the capture
server, the outbox, the engagement store: yes; SES and SNS: no).  `lookup(key)`: whether a message with that key was
already accepted, where the channel can tell.  The engine's recovery rule uses both.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import smtplib
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from resources.aws import AwsClientConfig
from resources.engagement.base import EngagementStore
from resources.sqlite_wal import retry_locked

_SAFE_PROGRAM = re.compile(r"[^a-z0-9_-]")


def capture_path(root: str | os.PathLike[str], program: str, key: str) -> Path:
    """Where a local SMTP capture files the message with this program and idempotency key: the SMTP channel reads
    it to learn whether a message whose reply was lost arrived (the capture server writes it)."""
    return Path(root) / (_SAFE_PROGRAM.sub("_", program.lower()) or "unknown") / f"{key}.eml"


IDEMPOTENCY_HEADER = "X-Engage-Idempotency-Key"
PROGRAM_HEADER = "X-Engage-Program"
TOUCH_HEADER = "X-Engage-Touch"


class SendError(Exception):
    """A classified provider error.  `code` is safe to log and record (no address, no message text)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class TransientSendError(SendError):
    """Worth retrying later: throttling, 4xx, connection refused, provider 5xx."""


class PermanentSendError(SendError):
    """Retrying cannot help.  `bounce`: the address itself was refused (it goes on the suppression list);
    `suppress`: record the touch as suppressed (e.g. the customer was erased) rather than failed."""

    def __init__(self, code: str, bounce: bool = False, suppress: bool = False):
        super().__init__(code)
        self.bounce = bounce
        self.suppress = suppress


@dataclass
class OutboundMessage:
    idempotency_key: str
    touch_key_hash: str
    program_id: str
    customer_id: str
    channel: str
    to: str | None  # e-mail address, E.164 phone number, or None (push, phone, in-app)
    subject: str | None
    text: str
    html: str | None = None
    touch: dict[str, Any] = field(default_factory=dict)  # the plan row (phone / in-app need its fields)
    channel_config: dict[str, Any] = field(default_factory=dict)  # the program's channel config
    now: int = 0


class ChannelSession(ABC):
    dedupes_by_key: bool = False

    @abstractmethod
    def send(self, message: OutboundMessage) -> str:
        """Hand one message to the provider; returns the provider's message id."""

    def lookup(self, message: OutboundMessage) -> str | None:
        """The provider id of an already-accepted message with this idempotency key, if the channel can tell."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: most sessions hold nothing to close
        """Release what the session holds (connections); nothing by default."""


class DeliveryChannel(dg.ConfigurableResource, ABC):
    """A channel: its send rate (a token bucket sized to the provider's quota) and how to open a session."""

    rate_per_s: float = Field(default=100.0, gt=0, description="Sustained sends per second (provider quota).")
    burst: int = Field(default=50, ge=1, description="Token-bucket size: sends allowed at once after idling.")
    max_connections: int = Field(default=1, ge=1, description="Parallel sessions (sender threads) per run.")

    @abstractmethod
    def open(self) -> ChannelSession: ...


def _part(text: str, subtype: str) -> str:
    """One text part: 7bit when it is plain ASCII with short lines (readable as is), else quoted-printable."""
    if text.isascii() and all(len(line) < 990 for line in text.splitlines()):
        body, cte = text, "7bit"
    else:
        body, cte = binascii.b2a_qp(text.encode("utf-8")).decode("ascii"), "quoted-printable"
    body = body.replace("\r\n", "\n").replace("\n", "\r\n")
    return f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}\r\n'


def _header_value(value: str) -> str:
    value = " ".join(value.split())  # no CR/LF: a value can never inject a header
    if value.isascii():
        return value
    return "=?utf-8?b?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def mime_bytes(message: OutboundMessage, from_address: str) -> bytes:
    """The RFC 5322 message: a text part (and an HTML alternative), the idempotency headers and a deterministic
    Message-ID.  Built by hand (the `email` package's builders cost ~0.5 ms a message, a quarter of the budget at
    2,000 messages/s); `tests/test_channels.py` parses the result back with the `email` package."""
    key = message.idempotency_key
    headers = (
        f"From: {_header_value(from_address)}\r\nTo: {_header_value(message.to or '')}\r\n"
        f"Subject: {_header_value(message.subject or '')}\r\n"
        f"Date: {formatdate(message.now or time.time(), usegmt=True)}\r\n"
        f"Message-ID: <{key}@engage.local>\r\nMIME-Version: 1.0\r\n"
        f"{IDEMPOTENCY_HEADER}: {key}\r\n{PROGRAM_HEADER}: {_header_value(message.program_id)}\r\n"
        f"{TOUCH_HEADER}: {message.touch_key_hash}\r\n"
    )
    if not message.html:
        return (headers + _part(message.text, "plain")).encode("ascii")
    boundary = f"=_engage_{key[:24]}"
    return (
        f'{headers}Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\n{_part(message.text, 'plain')}--{boundary}\r\n{_part(message.html, 'html')}"
        f"--{boundary}--\r\n"
    ).encode("ascii")


# ---------------------------------------------------------------------------------------------------------------------
# e-mail
# ---------------------------------------------------------------------------------------------------------------------


class EmailChannel(DeliveryChannel, ABC):
    from_address: str = "Engage <offers@engage.local>"


class SmtpEmailChannel(EmailChannel):
    """Real SMTP (smtplib) to `host:port`: locally the capture server (`make smtp`), or any relay.

    One connection per session, reused for every message (the server's 250 for each DATA is the acceptance); a
    dropped connection is reopened on the next send.  With `capture_dir` (the capture server's root) the channel can
    look up whether a message with a key was already captured.
    """

    host: str = "127.0.0.1"
    port: int = 2525
    timeout_s: float = 10.0
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    capture_dir: str | None = Field(default=None, description="Capture server root (local): enables lookup.")
    rate_per_s: float = 5_000.0
    burst: int = 500
    max_connections: int = 4  # one aiosmtpd process takes ~1,000 msg/s; run the capture server with --workers

    def open(self) -> SmtpSession:
        return SmtpSession(self)


class SmtpSession(ChannelSession):
    def __init__(self, cfg: SmtpEmailChannel):
        self.cfg = cfg
        self.smtp: smtplib.SMTP | None = None
        self.dedupes_by_key = cfg.capture_dir is not None  # the capture server de-duplicates; a relay may not

    def _connect(self) -> smtplib.SMTP:
        if self.smtp is None:
            try:
                smtp = smtplib.SMTP(self.cfg.host, self.cfg.port, timeout=self.cfg.timeout_s)
                if self.cfg.starttls:
                    smtp.starttls()
                if self.cfg.username:
                    smtp.login(self.cfg.username, self.cfg.password or "")
            except smtplib.SMTPResponseException as e:
                raise _smtp_error(e.smtp_code) from None
            except (OSError, smtplib.SMTPException):
                raise TransientSendError("smtp_connect") from None
            self.smtp = smtp
        return self.smtp

    def _drop(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
            self.smtp = None

    def send(self, message: OutboundMessage) -> str:
        if not message.to:
            raise PermanentSendError("no_address", suppress=True)
        data = mime_bytes(message, self.cfg.from_address)
        smtp = self._connect()
        try:
            refused = smtp.sendmail(self.cfg.from_address, [message.to], data)
        except smtplib.SMTPRecipientsRefused as e:
            code = next(iter(e.recipients.values()))[0] if e.recipients else 550
            raise _smtp_error(code, recipient=True) from None
        except smtplib.SMTPResponseException as e:
            if e.smtp_code in (421,):
                self._drop()
            raise _smtp_error(e.smtp_code) from None
        except (smtplib.SMTPServerDisconnected, OSError):
            self._drop()
            raise TransientSendError("smtp_disconnected") from None
        except smtplib.SMTPException:
            self._drop()
            raise TransientSendError("smtp_error") from None
        if refused:
            raise _smtp_error(550, recipient=True)
        return f"<{message.idempotency_key}@engage.local>"

    def lookup(self, message: OutboundMessage) -> str | None:
        if self.cfg.capture_dir is None:
            return None
        if capture_path(self.cfg.capture_dir, message.program_id, message.idempotency_key).exists():
            return f"<{message.idempotency_key}@engage.local>"
        return None

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except Exception:  # noqa: BLE001
                pass
            self.smtp = None


def _smtp_error(code: int, recipient: bool = False) -> SendError:
    if 400 <= code < 500:
        return TransientSendError(f"smtp_{code}")
    # 550/551/553: mailbox unavailable / not local / name not allowed → the address bounces.
    return PermanentSendError(f"smtp_{code}", bounce=recipient or code in (550, 551, 553))


class SesEmailChannel(AwsClientConfig, EmailChannel):
    """SES v2 `SendEmail` with raw MIME content (the same headers as SMTP, so the idempotency key travels);
    `EmailTags` carry the touch hash for bounce/complaint events.  SES does not de-duplicate."""

    configuration_set: str | None = None
    max_attempts: int = 1  # the engine retries with its own backoff
    rate_per_s: float = 14.0  # SES's default sending quota; raise it to the account's quota
    burst: int = 14
    max_connections: int = 4

    def open(self) -> SesSession:
        return SesSession(self, self.aws_client("sesv2"))


class SesSession(ChannelSession):
    def __init__(self, cfg: SesEmailChannel, client: Any):
        self.cfg, self.client = cfg, client

    def send(self, message: OutboundMessage) -> str:
        if not message.to:
            raise PermanentSendError("no_address", suppress=True)
        kwargs: dict[str, Any] = {
            "FromEmailAddress": self.cfg.from_address,
            "Destination": {"ToAddresses": [message.to]},
            "Content": {"Raw": {"Data": mime_bytes(message, self.cfg.from_address)}},
            "EmailTags": [
                {"Name": "touch", "Value": message.touch_key_hash},
                {"Name": "program", "Value": message.program_id},
            ],
        }
        if self.cfg.configuration_set:
            kwargs["ConfigurationSetName"] = self.cfg.configuration_set
        return _aws_call(lambda: self.client.send_email(**kwargs))["MessageId"]


# ---------------------------------------------------------------------------------------------------------------------
# SMS and push
# ---------------------------------------------------------------------------------------------------------------------

_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    idempotency_key TEXT PRIMARY KEY,
    program_id      TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    to_address      TEXT,
    title           TEXT,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    received        INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
"""


class OutboxChannel(DeliveryChannel, ABC):
    """A durable local outbox: `<root>/<channel>.sqlite`, one row per idempotency key (a second send with the same
    key only bumps `received`), readable with any SQLite client."""

    root: str
    rate_per_s: float = 10_000.0
    burst: int = 1_000
    channel_name: str = "sms"

    def open(self) -> OutboxSession:
        return OutboxSession(Path(self.root) / f"{self.channel_name}.sqlite")


class OutboxSmsChannel(OutboxChannel):
    channel_name: str = "sms"


class OutboxPushChannel(OutboxChannel):
    channel_name: str = "push"


class OutboxSession(ChannelSession):
    dedupes_by_key = True

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 60000")
        retry_locked(lambda: self.conn.execute("PRAGMA journal_mode = WAL"), 60_000)  # see resources.sqlite_wal
        self.conn.execute("PRAGMA synchronous = NORMAL")
        retry_locked(lambda: self.conn.executescript(_OUTBOX_SCHEMA), 60_000)
        self._lock = threading.Lock()

    def send(self, message: OutboundMessage) -> str:
        with self._lock:
            self.conn.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (idempotency_key) DO UPDATE SET received = received + 1",
                (
                    message.idempotency_key,
                    message.program_id,
                    message.customer_id,
                    message.to,
                    message.subject,
                    message.text,
                    message.now,
                ),
            )
        return f"outbox:{message.idempotency_key}"

    def lookup(self, message: OutboundMessage) -> str | None:
        row = self.conn.execute(
            "SELECT 1 FROM messages WHERE idempotency_key = ?", (message.idempotency_key,)
        ).fetchone()
        return f"outbox:{message.idempotency_key}" if row else None

    def close(self) -> None:
        self.conn.close()


class SnsSmsChannel(AwsClientConfig, DeliveryChannel):
    """SNS `Publish` to a phone number (E.164); the idempotency key travels as a message attribute."""

    sms_type: str = "Promotional"
    sender_id: str | None = None
    max_attempts: int = 1
    rate_per_s: float = 20.0  # SNS SMS default transactions per second; raise to the account's quota
    burst: int = 20

    def open(self) -> SnsSession:
        return SnsSession(self.aws_client("sns"), sms=self)


class SnsPushChannel(AwsClientConfig, DeliveryChannel):
    """SNS `Publish` of a mobile-push payload to `topic_arn`; a `customerId` message attribute lets the app's
    subscription filter policy route it to the customer's device endpoints."""

    topic_arn: str
    max_attempts: int = 1
    rate_per_s: float = 100.0
    burst: int = 100

    def open(self) -> SnsSession:
        return SnsSession(self.aws_client("sns"), push_topic=self.topic_arn)


class SnsSession(ChannelSession):
    def __init__(self, client: Any, sms: SnsSmsChannel | None = None, push_topic: str | None = None):
        self.client, self.sms, self.push_topic = client, sms, push_topic

    def send(self, message: OutboundMessage) -> str:
        attrs: dict[str, Any] = {
            "engage.idempotencyKey": {"DataType": "String", "StringValue": message.idempotency_key},
            "engage.program": {"DataType": "String", "StringValue": message.program_id},
        }
        if self.sms is not None:
            if not message.to:
                raise PermanentSendError("no_address", suppress=True)
            attrs["AWS.SNS.SMS.SMSType"] = {"DataType": "String", "StringValue": self.sms.sms_type}
            if self.sms.sender_id:
                attrs["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self.sms.sender_id}
            kwargs: dict[str, Any] = {"PhoneNumber": message.to, "Message": message.text, "MessageAttributes": attrs}
        else:
            attrs["customerId"] = {"DataType": "String", "StringValue": message.customer_id}
            note = {"title": message.subject or "", "body": message.text}
            payload = {
                "default": message.text,
                "GCM": json.dumps({"notification": note, "data": {"idempotencyKey": message.idempotency_key}}),
                "APNS": json.dumps({"aps": {"alert": note}, "idempotencyKey": message.idempotency_key}),
            }
            kwargs = {
                "TopicArn": self.push_topic,
                "Message": json.dumps(payload),
                "MessageStructure": "json",
                "MessageAttributes": attrs,
            }
        return _aws_call(lambda: self.client.publish(**kwargs))["MessageId"]


_AWS_TRANSIENT = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "InternalErrorException",
    "KMSThrottlingException",
}
_AWS_BOUNCE = {"InvalidParameter", "InvalidParameterValue", "InvalidParameterException", "EndpointDisabled", "OptedOut"}


def _aws_call(fn: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        return fn()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "ClientError")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        if code in _AWS_TRANSIENT or status >= 500 or status == 429:
            raise TransientSendError(f"aws_{code}") from None
        raise PermanentSendError(f"aws_{code}", bounce=code in _AWS_BOUNCE) from None
    except (TimeoutError, BotoConnectionError, ConnectionError):
        raise TransientSendError("aws_connection") from None
    except BotoCoreError:
        raise TransientSendError("aws_client") from None


# ---------------------------------------------------------------------------------------------------------------------
# phone and in-app: through the engagement store the serving API reads
# ---------------------------------------------------------------------------------------------------------------------


def _hours(spec: str | None, default_h: int) -> int:
    if not spec:
        return default_h
    n = int(spec[:-1])
    return n * 24 if spec.endswith("d") else n


def _offer(touch: dict[str, Any]) -> dict[str, Any]:
    offer = touch.get("offer")
    if isinstance(offer, str):
        try:
            offer = json.loads(offer)
        except ValueError:
            offer = {"text": offer}
    return offer if isinstance(offer, dict) else {}


class _StoreSession(ChannelSession):
    dedupes_by_key = True  # ids are the idempotency key; the store inserts each id once

    def __init__(self, store: EngagementStore):
        self.store = store


class CallTaskSession(_StoreSession):
    def send(self, message: OutboundMessage) -> str:
        t, cfg = message.touch, message.channel_config
        due = int(t.get("dueAt") or message.now)
        task = {
            "taskId": message.idempotency_key,
            "customerId": message.customer_id,
            "programId": message.program_id,
            "segment": t.get("segment"),
            "scriptId": cfg.get("scriptId") or t.get("templateId"),
            "callType": cfg.get("callType", "account-manager"),
            "score": None if t.get("score") is None else float(t["score"]),
            "offer": _offer(t),
            # the call is due by the end of its window (scheduleWithin: 24h / 48h after the touch's send time)
            "dueAt": due + _hours(cfg.get("scheduleWithin"), 24) * 3600,
            "priority": int(round(float(t.get("score") or 0) * 1000)),
        }
        if self.store.create_call_task(task) or self.store.get_call_task(task["taskId"]) is not None:
            return task["taskId"]
        raise PermanentSendError("customer_deleted", suppress=True)

    def lookup(self, message: OutboundMessage) -> str | None:
        return message.idempotency_key if self.store.get_call_task(message.idempotency_key) else None


class InboxSession(_StoreSession):
    def send(self, message: OutboundMessage) -> str:
        t, cfg = message.touch, message.channel_config
        start = max(int(t.get("dueAt") or message.now), 0)
        until = start + int(cfg.get("displayDuration") or 7) * 86_400
        entry = {
            "messageId": message.idempotency_key,
            "customerId": message.customer_id,
            "programId": message.program_id,
            "messageType": cfg.get("messageType", "offer"),
            "templateId": t.get("templateId"),
            "offer": _offer(t) | {"title": message.subject, "text": message.text},
            "score": None if t.get("score") is None else float(t["score"]),
            "displayFrom": start,
            "displayUntil": until,
        }
        if self.store.upsert_inbox_message(entry) or self.store.get_inbox_message(entry["messageId"]) is not None:
            return entry["messageId"]
        raise PermanentSendError("customer_deleted", suppress=True)

    def lookup(self, message: OutboundMessage) -> str | None:
        return message.idempotency_key if self.store.get_inbox_message(message.idempotency_key) else None


class CallTaskChannel:
    """Phone: a call task for account managers (served by the serving API's call-task routes)."""

    rate_per_s = 1_000.0
    burst = 1_000

    def __init__(self, store: EngagementStore):
        self.store = store

    def open(self) -> CallTaskSession:
        return CallTaskSession(self.store)


class InboxChannel:
    """In-app: an inbox entry shown for the channel's `displayDuration` days."""

    rate_per_s = 1_000.0
    burst = 1_000

    def __init__(self, store: EngagementStore):
        self.store = store

    def open(self) -> InboxSession:
        return InboxSession(self.store)


class TokenBucket:
    """Per-channel send rate: `rate` tokens a second, at most `burst` saved up; `take()` sleeps until one is free."""

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic, sleep: Any = time.sleep):
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.clock, self.sleep = float(burst), clock, sleep
        self.last = clock()
        self.waited_s = 0.0
        self.lock = threading.Lock()  # several sender threads share one channel's bucket

    def take(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            wait = (1.0 - self.tokens) / self.rate
            self.sleep(wait)
            self.waited_s += wait
            self.tokens = 0.0
            self.last = self.clock()
        else:
            self.tokens -= 1.0
