"""E-mail in production: SES v2 `SendEmail` with raw MIME content."""

from __future__ import annotations

from typing import Any

from resources.aws import AwsClientConfig
from resources.channels.aws_errors import aws_call
from resources.channels.base import ChannelSession, EmailChannel, OutboundMessage, PermanentSendError
from resources.channels.mime import mime_bytes


class SesEmailChannel(AwsClientConfig, EmailChannel):
    """SES v2 `SendEmail` with raw MIME content (the same headers as SMTP, so the idempotency key travels);
    `EmailTags` carry the touch hash for bounce/complaint events.  SES does not de-duplicate."""

    configuration_set: str | None = None
    max_attempts: int = 1  # the engine retries with its own backoff
    rate_per_s: float = 14.0  # SES's default sending quota; raise it to the account's quota
    burst: int = 14
    max_connections: int = 4

    def open(self) -> SesSession:
        """A session over one `sesv2` client."""
        return SesSession(self, self.aws_client("sesv2"))


class SesSession(ChannelSession):
    """Sends each message with one `SendEmail` request."""

    def __init__(self, cfg: SesEmailChannel, client: Any):
        self.cfg, self.client = cfg, client

    def send(self, message: OutboundMessage) -> str:
        """Send the raw MIME message; returns SES's message id."""
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
        return aws_call(lambda: self.client.send_email(**kwargs))["MessageId"]
