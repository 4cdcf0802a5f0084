"""The event-source interface: a queue with SQS semantics, which the reactive programs' sensor drains.

At-least-once delivery.  `receive` hides each message it returns for a visibility timeout and hands out a receipt
handle, fresh on every receive; the consumer `delete`s the message by that receipt once it is processed.  A message
not deleted in time becomes visible again and is received again, its receive count one higher.  A message received
`max_receive_count` times without being deleted moves to the dead-letter store on its next receive (the redrive,
reason `max_receives`); a consumer moves a message it can never process there itself with `quarantine` (bad input,
with its own reason code).  A stale receipt (the visibility timeout expired and the message was received again)
deletes nothing: only the latest receiver may delete.

Order is FIFO-ish: oldest first, as far as the backend keeps it (SQS standard queues keep it only roughly).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import dagster as dg

MAX_RECEIVES = "max_receives"
"""The dead-letter reason of a message redriven after `max_receive_count` receives."""


@dataclass(frozen=True)
class Message:
    """One received message (or one dead letter: then `reason` says why it is there)."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at: float  # epoch seconds
    reason: str | None = None


@dataclass(frozen=True)
class SendResult:
    """The outcome of sending one body: its message id, or the error code that kept it out of the queue."""

    message_id: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the message was accepted (it is in the queue)."""
        return self.error is None


class EventSource(dg.ConfigurableResource, ABC):
    """A durable queue of event bodies (JSON text) with visibility timeouts, receipts and a dead-letter store."""

    @abstractmethod
    def send(self, bodies: list[str]) -> list[SendResult]:
        """Enqueue the bodies (in batches); one result per body, in order."""

    @abstractmethod
    def receive(self, max_messages: int, visibility_timeout_s: int | None = None, wait_s: float = 0) -> list[Message]:
        """Up to `max_messages` visible messages, oldest first, each hidden for `visibility_timeout_s` (None: the
        source's default).  With `wait_s` > 0, waits up to that long for a first message when none is visible
        (long polling); returns [] when none came."""

    @abstractmethod
    def delete(self, receipt_handles: list[str]) -> None:
        """Delete the messages these receipts hold (processed).  A stale receipt, or one whose message is gone
        already, deletes nothing and is no error."""

    @abstractmethod
    def change_visibility(self, receipt_handle: str, timeout_s: int) -> bool:
        """Hide the message for `timeout_s` from now (0: visible at once, for another consumer).  False when the
        receipt no longer holds the message (deleted, dead-lettered, or received again after its timeout)."""

    @abstractmethod
    def quarantine(self, message: Message, reason: str) -> None:
        """Move a received message straight to the dead-letter store with a reason code (input that can never be
        processed); the message leaves the queue."""

    @abstractmethod
    def dead_letters(self, limit: int) -> list[Message]:
        """Up to `limit` dead letters (oldest first where the backend keeps an order), each with its `reason`."""

    @abstractmethod
    def dead_letter_count(self) -> int:
        """How many messages the dead-letter store holds (approximate on SQS)."""

    @abstractmethod
    def approximate_depth(self) -> int:
        """How many messages the queue holds: visible and in flight, not deleted nor dead-lettered."""


def check_reason(reason: str) -> str:
    """A dead-letter reason code: non-empty, at most 256 characters (it travels as an SQS message attribute)."""
    if not reason or len(reason) > 256:
        raise ValueError(f"a dead-letter reason must be 1-256 characters, got {len(reason)}")
    return reason
