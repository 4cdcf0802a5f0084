"""SMS and push in production: SNS `Publish` (to a phone number, or a mobile-push payload to a topic)."""

from __future__ import annotations

import json
from typing import Any

from resources.aws import AwsClientConfig
from resources.channels.aws_errors import aws_call
from resources.channels.base import ChannelSession, DeliveryChannel, OutboundMessage, PermanentSendError


class SnsSmsChannel(AwsClientConfig, DeliveryChannel):
    """SNS `Publish` to a phone number (E.164); the idempotency key travels as a message attribute."""

    sms_type: str = "Promotional"
    sender_id: str | None = None
    max_attempts: int = 1
    rate_per_s: float = 20.0  # SNS SMS default transactions per second; raise to the account's quota
    burst: int = 20

    def open(self) -> SnsSession:
        """A session over one `sns` client, publishing SMS."""
        return SnsSession(self.aws_client("sns"), sms=self)


class SnsPushChannel(AwsClientConfig, DeliveryChannel):
    """SNS `Publish` of a mobile-push payload to `topic_arn`; a `customerId` message attribute lets the app's
    subscription filter policy route it to the customer's device endpoints."""

    topic_arn: str
    max_attempts: int = 1
    rate_per_s: float = 100.0
    burst: int = 100

    def open(self) -> SnsSession:
        """A session over one `sns` client, publishing to the push topic."""
        return SnsSession(self.aws_client("sns"), push_topic=self.topic_arn)


class SnsSession(ChannelSession):
    """Publishes each message with one SNS request: SMS when `sms` is given, else push to `push_topic`."""

    def __init__(self, client: Any, sms: SnsSmsChannel | None = None, push_topic: str | None = None):
        self.client, self.sms, self.push_topic = client, sms, push_topic

    def send(self, message: OutboundMessage) -> str:
        """Publish the message; returns SNS's message id."""
        attrs: dict[str, Any] = {
            "engage.idempotencyKey": {"DataType": "String", "StringValue": message.idempotency_key},
            "engage.program": {"DataType": "String", "StringValue": message.program_id},
        }
        if self.sms is not None:
            kwargs = self._sms_request(message, self.sms, attrs)
        else:
            kwargs = self._push_request(message, attrs)
        return aws_call(lambda: self.client.publish(**kwargs))["MessageId"]

    @staticmethod
    def _sms_request(message: OutboundMessage, sms: SnsSmsChannel, attrs: dict[str, Any]) -> dict[str, Any]:
        if not message.to:
            raise PermanentSendError("no_address", suppress=True)
        attrs["AWS.SNS.SMS.SMSType"] = {"DataType": "String", "StringValue": sms.sms_type}
        if sms.sender_id:
            attrs["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sms.sender_id}
        return {"PhoneNumber": message.to, "Message": message.text, "MessageAttributes": attrs}

    def _push_request(self, message: OutboundMessage, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["customerId"] = {"DataType": "String", "StringValue": message.customer_id}
        note = {"title": message.subject or "", "body": message.text}
        payload = {
            "default": message.text,
            "GCM": json.dumps({"notification": note, "data": {"idempotencyKey": message.idempotency_key}}),
            "APNS": json.dumps({"aps": {"alert": note}, "idempotencyKey": message.idempotency_key}),
        }
        return {
            "TopicArn": self.push_topic,
            "Message": json.dumps(payload),
            "MessageStructure": "json",
            "MessageAttributes": attrs,
        }
