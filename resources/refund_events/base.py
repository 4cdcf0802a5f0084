"""Refunds and credits reach the systems that pay them: each processed issuance of the refund ledger is published
as one event for the order and billing systems, and the issuance's publication state follows their acknowledgement.

The ledger is the outbox (`RefundLedgerBackend.unpublished` / `mark_published`): an issuance is `issued` when it is
processed (at once, or when approved) and `published` once the publisher reports the event acknowledged
(EventBridge: PutEvents answered the entry with an EventId, no ErrorCode).  A failed publication (an entry
EventBridge refused, a request that raised) leaves the issuance `issued`; the next run publishes it again with the
same event: the ledger's issuance id is the event's `idempotencyKey` in `Detail`, which the consumers de-duplicate
on (delivery is at least once: EventBridge has no idempotent PutEvents, and a crash between the acknowledgement and
`mark_published` publishes again).  Publishing never issues: a refund is issued once by the ledger, whatever the
publisher does.

Backends: `LocalRefundEventLog` (an append-only SQLite table under ENGAGE_HOME, one row per event id) on this
machine; `EventBridgeRefundPublisher` (PutEvents to a bus) in production.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from resources.refund_ledger.base import PUBLISH_COLUMNS, RefundLedgerBackend

SOURCE = "engage.refunds"
DETAIL_TYPES = {"refund": "Refund Issued", "credit": "Credit Issued"}
PAGE = 500  # issuances read from the outbox at a time


@dataclass(frozen=True)
class RefundEvent:
    """One issuance's event: `event_id` is the ledger's issuance id (the consumers' idempotency key)."""

    event_id: str
    detail_type: str
    detail: dict[str, Any]


def camel(name: str) -> str:
    """snake_case → camelCase (the event's field names)."""
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def refund_event(issuance: Mapping[str, Any]) -> RefundEvent:
    """The event of an issuance as `unpublished` returns it (ids and amounts: no personal data)."""
    event_id = str(issuance["issuance_id"])
    detail: dict[str, Any] = {"idempotencyKey": event_id, "issuanceId": event_id}
    detail.update({camel(c): issuance.get(c) for c in PUBLISH_COLUMNS})
    return RefundEvent(event_id, DETAIL_TYPES[str(issuance["kind"])], detail)


class RefundEventPublisher(dg.ConfigurableResource, ABC):
    """Where issuance events go (the order and billing systems)."""

    @abstractmethod
    def publish(self, events: Sequence[RefundEvent]) -> set[str]:
        """Publish `events`; the ids of those the receiving side acknowledged (the others are published again, with
        the same id, by a later run)."""


@dataclass
class PublishResult:
    """What one `publish_issuances` call did."""

    published: int = 0  # issuances acknowledged now (issued → published)
    failed: int = 0  # issuances left issued (published again by the next run)


def publish_issuances(
    ledger: RefundLedgerBackend, publisher: RefundEventPublisher, program_id: str, now: int | None = None
) -> PublishResult:
    """Publish the program's issued, unacknowledged issuances (the earlier runs' failures too), oldest first, and
    mark those acknowledged.  Each is offered once per call: a failure is reported, not retried here."""
    result = PublishResult()
    seen: set[str] = set()
    while True:
        limit = len(seen) + PAGE  # the ones seen (failed now, or listed again by a lagging index) and a page more
        rows = ledger.unpublished(program_id, limit=limit)
        fresh = [r for r in rows if str(r["issuance_id"]) not in seen]
        if not fresh:
            return result
        events = [refund_event(r) for r in fresh]
        seen.update(e.event_id for e in events)
        acknowledged = publisher.publish(events) & {e.event_id for e in events}
        result.published += ledger.mark_published(sorted(acknowledged), now=now)
        result.failed += len(events) - len(acknowledged)
        if len(rows) < limit:  # the outbox held no more
            return result
