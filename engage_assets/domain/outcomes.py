"""Outcomes the providers report about messages the platform sent, read from their own shapes (pure: no I/O).

- **SES events** (a configuration set's event destination, or an identity's notifications, through SNS): the SNS
  message's `Message` is the event JSON, `eventType` (or `notificationType`) one of Send, Delivery, Open, Click,
  Bounce, Complaint, Reject, DeliveryDelay, Rendering Failure, Subscription; `mail.messageId` is the id SES returned
  to `SendEmail`, which the delivery ledger records as the touch's `provider_id`.
- **SMS and push delivery receipts**: SNS delivery-status records (`notification.messageId`, `delivery`, `status`
  SUCCESS | FAILURE), as SNS writes them to CloudWatch Logs and a log subscription forwards them.
- **The SNS envelope** every SNS HTTP(S) delivery has (`Type`, `MessageId`, `TopicArn`, `Signature`, …) and the
  text its signature covers (`string_to_sign`); checking the signature is the serving API's job (it fetches the
  certificate).

Each reported event becomes an `Outcome`: kind, when, the provider's message id, and a detail code, never an
address or a link's query.  The addresses an event names (bounced or complained recipients, an SMS destination) are
kept in `addresses` only for the suppression list, which stores keyed hashes; they are never stored with the outcome.
Bad input raises `OutcomeError` with the reason (the webhook answers 4xx with it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

# The kinds an outcome can be, and what the platform does with them (the serving API's webhooks):
#   bounced (permanent) / complained  → the address goes on the channel's suppression list
#   unsubscribed                      → the customer's opt-out of the channel (or of all marketing) at send time
KINDS = (
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "rejected",
    "delayed",
    "failed",
    "unsubscribed",
    "subscribed",
)

SES_TYPES = {
    "Send": ("sent", "send"),
    "Delivery": ("delivered", "delivery"),
    "Open": ("opened", "open"),
    "Click": ("clicked", "click"),
    "Bounce": ("bounced", "bounce"),
    "Complaint": ("complained", "complaint"),
    "Reject": ("rejected", "reject"),
    "DeliveryDelay": ("delayed", "deliveryDelay"),
    "Rendering Failure": ("failed", "failure"),
    "Subscription": ("unsubscribed", "subscription"),
}
SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
# SMS receipts whose provider response says the number will never take a message (suppressed), or that its owner
# replied STOP (an opt-out); any other failure may be transient and is only recorded.
SMS_OPTED_OUT = ("opted out", "opted-out", "optedout")
SMS_PERMANENT = ("invalid phone number", "not a valid", "unknown subscriber", "does not exist", "unreachable")


class OutcomeError(ValueError):
    """A provider message that cannot be read: the reason says what is wrong (never the input's values)."""


@dataclass(frozen=True)
class Outcome:
    """One reported event about one sent message."""

    event_id: str  # the de-duplication key: a retried delivery of the same report has the same one
    provider: str  # ses | sns-sms | sns-push
    provider_id: str  # the provider's message id: the delivery ledger's `provider_id` of the touch
    channel: str  # email | sms | push
    kind: str  # one of KINDS
    occurred_at: int  # epoch seconds
    detail: str | None = None  # a code: bounce type, complaint type, link host and path, provider status …
    permanent: bool = False  # the address will not take another message (a hard bounce, a complaint, a bad number)
    unsubscribe_all: bool = False  # an unsubscribe from every marketing message, not only this channel
    addresses: tuple[str, ...] = field(default=(), compare=False)  # for the suppression list only; never stored

    def record(self) -> dict[str, Any]:
        """What is stored: every field but the addresses."""
        return {
            "eventId": self.event_id,
            "provider": self.provider,
            "providerId": self.provider_id,
            "channel": self.channel,
            "kind": self.kind,
            "occurredAt": self.occurred_at,
            "detail": self.detail,
            "permanent": self.permanent,
            "unsubscribeAll": self.unsubscribe_all,
        }


def loads_json(text: str | bytes, what: str) -> Any:
    """Parsed JSON, or OutcomeError saying that it is not."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise OutcomeError(f"{what} is not valid JSON") from None


def loads_object(text: str | bytes, what: str) -> dict[str, Any]:
    """A JSON object, or OutcomeError saying what was expected."""
    value = loads_json(text, what)
    if not isinstance(value, dict):
        raise OutcomeError(f"{what} is not a JSON object")
    return value


def _object(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def _text(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise OutcomeError(f"{where}: {name} is missing or not a string")
    return value


def epoch_of(stamp: Any) -> int | None:
    """Epoch seconds of an ISO 8601 stamp (`2026-11-21T10:00:00.123Z`, or SNS logs' `2026-11-21 10:00:00.123`)."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def parse_sns_envelope(body: bytes) -> dict[str, str]:
    """The SNS message an HTTP(S) subscription receives: a known `Type` and the fields its signature covers."""
    message = loads_object(body, "the SNS message")
    kind = message.get("Type")
    if kind not in SNS_TYPES:
        raise OutcomeError(f"unknown SNS message type {str(kind)[:40]!r}")
    for name in (*SNS_SIGNED_FIELDS[kind], "SignatureVersion", "Signature", "SigningCertURL"):
        if name != "Subject":
            _text(message, name, "the SNS message")
    if message.get("SignatureVersion") not in ("1", "2"):
        raise OutcomeError("unsupported SNS SignatureVersion")
    return message


def string_to_sign(message: Mapping[str, str]) -> bytes:
    """The text an SNS signature covers: each signed field present, as `name\\nvalue\\n`, in SNS's order."""
    parts = []
    for name in SNS_SIGNED_FIELDS[message["Type"]]:
        if name in message and message[name] is not None:
            parts.append(f"{name}\n{message[name]}\n")
    return "".join(parts).encode()


def _click_detail(click: Mapping[str, Any]) -> str | None:
    link = click.get("link")
    if not isinstance(link, str):
        return None
    parts = urlsplit(link)
    return f"{parts.netloc}{parts.path}"[:200] or None  # never the query: tokens, ids


def _recipients(block: Mapping[str, Any], name: str) -> tuple[str, ...]:
    return tuple(
        r["emailAddress"]
        for r in block.get(name) or []
        if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)
    )


def parse_ses_event(event: Mapping[str, Any], event_id: str) -> Outcome:
    """One SES event (event publishing's `eventType`, or a notification's `notificationType`) as an Outcome."""
    name = event.get("eventType") or event.get("notificationType")
    if name not in SES_TYPES:
        raise OutcomeError(f"unknown SES event type {str(name)[:40]!r}")
    kind, key = SES_TYPES[name]
    mail = event.get("mail")
    if not isinstance(mail, dict):
        raise OutcomeError("the SES event has no mail object")
    provider_id = _text(mail, "messageId", "the SES event's mail")
    block = _object(event.get(key))
    when = epoch_of(block.get("timestamp")) or epoch_of(mail.get("timestamp"))
    if when is None:
        raise OutcomeError("the SES event has no valid timestamp")
    outcome = Outcome(event_id, "ses", provider_id, "email", kind, when)
    if kind == "bounced":
        permanent = block.get("bounceType") == "Permanent"
        detail = f"{block.get('bounceType')}:{block.get('bounceSubType')}"
        return _with(outcome, detail=detail, permanent=permanent, addresses=_recipients(block, "bouncedRecipients"))
    if kind == "complained":
        detail = str(block.get("complaintFeedbackType") or "complaint")
        return _with(outcome, detail=detail, permanent=True, addresses=_recipients(block, "complainedRecipients"))
    if kind == "clicked":
        return _with(outcome, detail=_click_detail(block))
    if kind == "unsubscribed":
        return _subscription(outcome, block, mail)
    if kind in ("rejected", "failed", "delayed"):
        return _with(
            outcome, detail=str(block.get("reason") or block.get("delayType") or block.get("errorMessage"))[:80]
        )
    return outcome


def _subscription(outcome: Outcome, block: Mapping[str, Any], mail: Mapping[str, Any]) -> Outcome:
    """A Subscription event: an unsubscribe (from all, or from a topic) or a subscribe."""
    preferences = _object(block.get("newTopicPreferences"))
    everything = preferences.get("unsubscribeAll") is True
    topics = preferences.get("topicSubscriptionStatus") or []
    opted_out = everything or any(isinstance(t, dict) and t.get("subscriptionStatus") == "OptOut" for t in topics)
    addresses = tuple(a for a in mail.get("destination") or [] if isinstance(a, str))
    return _with(
        outcome,
        kind="unsubscribed" if opted_out else "subscribed",
        detail="all" if everything else "topic",
        unsubscribe_all=everything,
        addresses=addresses,
    )


def _with(outcome: Outcome, **changes: Any) -> Outcome:
    return Outcome(**{**outcome.__dict__, **changes})


def parse_delivery_receipt(record: Mapping[str, Any], channel: str) -> Outcome:
    """One SNS delivery-status record (SMS or push) as an Outcome: delivered, failed, or unsubscribed (an SMS to a
    number that opted out)."""
    if channel not in ("sms", "push"):
        raise OutcomeError(f"no delivery receipts for channel {channel!r}")
    notification = record.get("notification")
    delivery = _object(record.get("delivery"))
    if not isinstance(notification, dict):
        raise OutcomeError("the receipt has no notification object")
    provider_id = _text(notification, "messageId", "the receipt's notification")
    when = epoch_of(notification.get("timestamp"))
    if when is None:
        raise OutcomeError("the receipt has no valid notification.timestamp")
    status = record.get("status")
    if status not in ("SUCCESS", "FAILURE"):
        raise OutcomeError(f"unknown receipt status {str(status)[:20]!r}")
    response = str(delivery.get("providerResponse") or "")
    code = delivery.get("statusCode")
    detail = (f"{code}:" if code is not None else "") + response[:80]
    outcome = Outcome(f"{provider_id}:{status}", f"sns-{channel}", provider_id, channel, "delivered", when, detail)
    if status == "SUCCESS":
        return outcome
    lowered = response.lower()
    destination = delivery.get("destination")
    addresses = (destination,) if channel == "sms" and isinstance(destination, str) else ()
    if channel == "sms" and any(s in lowered for s in SMS_OPTED_OUT):
        return _with(outcome, kind="unsubscribed", addresses=addresses)
    permanent = any(s in lowered for s in SMS_PERMANENT) or code in (410,) or "endpointdisabled" in lowered
    return _with(outcome, kind="failed", permanent=permanent, addresses=addresses)
