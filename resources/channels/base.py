"""The delivery-channel interface: messages, sessions, channels and classified send errors (ARCHITECTURE §7).

A channel resource opens a `ChannelSession` (one SMTP connection reused for many messages, one boto3 client) that
sends `OutboundMessage`s.  Every message carries the ledger's idempotency key (an e-mail header, an SNS message
attribute, the call task's / inbox entry's id).  Errors are classified, never carrying an address:
`TransientSendError` (SMTP 4xx, connection refused, AWS throttling / 5xx: retried with backoff) and
`PermanentSendError` (SMTP 5xx, invalid parameter: not retried; `bounce` puts the address on the suppression list).

`dedupes_by_key`: whether the receiving side drops a second message with the same idempotency key (the capture
server, the outbox, the engagement store: yes; SES and SNS: no).  `lookup(key)`: whether a message with that key was
already accepted, where the channel can tell.  The engine's recovery rule uses both.

The implementations live in the sibling modules (see the package docstring).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

IDEMPOTENCY_HEADER = "X-Engage-Idempotency-Key"
PROGRAM_HEADER = "X-Engage-Program"
TOUCH_HEADER = "X-Engage-Touch"

_SAFE_PROGRAM = re.compile(r"[^a-z0-9_-]")


def capture_path(root: str | os.PathLike[str], program: str, key: str) -> Path:
    """Where a local SMTP capture files the message with this program and idempotency key: the SMTP channel reads
    it to learn whether a message whose reply was lost arrived (the capture server writes it)."""
    return Path(root) / (_SAFE_PROGRAM.sub("_", program.lower()) or "unknown") / f"{key}.eml"


def erase_captured_mail(root: str | os.PathLike[str], addresses: Collection[str]) -> int:
    """Delete every captured message (`<root>/<program>/<key>.eml`) addressed to one of `addresses` (GDPR: the file
    names are hashed keys, so the `To` header is what ties a capture to a customer); returns the files removed."""
    wanted = {a.strip().lower() for a in addresses if a}
    if not wanted or not Path(root).is_dir():
        return 0
    removed = 0
    parser = BytesHeaderParser()
    for path in Path(root).glob("*/*.eml"):
        try:
            with path.open("rb") as fh:
                headers = parser.parse(fh)
            if any(addr.lower() in wanted for _, addr in getaddresses(headers.get_all("To", []))):
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


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
    """One message to send: the ledger's keys, the recipient, the rendered content and the touch it comes from."""

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
    """An open channel (a connection, a client) that sends messages one at a time."""

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
    def open(self) -> ChannelSession:
        """A new session; each sender thread opens its own."""

    def erase_customers(
        self, customer_ids: Collection[str], contacts: Callable[[], Mapping[str, Mapping[str, Any]]]
    ) -> int:
        """Remove the copies of messages to these customers this channel keeps (GDPR; `contacts()`: their contact
        rows, asked for only by a channel that files messages by address); returns the messages removed.  A
        provider's channel keeps none here: 0."""
        return 0


class EmailChannel(DeliveryChannel, ABC):
    """An e-mail channel: the sender address every implementation puts in `From`."""

    from_address: str = "Engage <offers@engage.local>"
