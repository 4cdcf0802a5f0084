"""The outcome store's interface: what the providers reported about the messages the platform sent, and the opt-outs
the reports record.

An outcome (`engage_assets.domain.outcomes.Outcome`) is kept under its event id, once: providers retry, and a retried
report (the same SNS `MessageId`, the same receipt) is recognised and not recorded again.  It is joined to the touch it
is about by the provider's message id, which the delivery ledger records as the touch's `provider_id` (the webhook
looks the touch up, `DeliveryLedgerBackend.find_sent`); one whose touch the ledger does not know is kept all the
same, aside, with the reason in `unmatched`.  No address is ever stored: the outcome's record has none.

Opt-outs are (customer, channel) pairs, `marketing` for every channel: what `CustomerState.use_opt_outs` applies to
the contact rows at send time, so an unsubscribed customer is suppressed (`opted_out:<channel>`, `marketing_opt_out`)
before the warehouse's consent columns catch up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from engage_assets.domain.outcomes import Outcome

MARKETING = "marketing"  # an opt-out of every channel


@dataclass(frozen=True)
class TouchRef:
    """The touch an outcome is about (from the delivery ledger): no address, no message."""

    touch_ref: str  # the touch's provider-facing idempotency key
    program_id: str
    customer_id: str


def outcome_item(outcome: Outcome, touch: TouchRef | None, unmatched: str | None, now: int) -> dict[str, Any]:
    """The stored form of an outcome, joined to its touch (or kept aside with the reason)."""
    return {
        **outcome.record(),
        "touchRef": touch.touch_ref if touch else None,
        "programId": touch.program_id if touch else None,
        "customerId": touch.customer_id if touch else None,
        "unmatched": None if touch else unmatched or "unknown provider message id",
        "recordedAt": now,
    }


class OutcomeStore(dg.ConfigurableResource, ABC):
    """Outcomes by event id (recorded once) and provider message id, and the opt-outs they record."""

    @abstractmethod
    def record(self, outcome: Outcome, touch: TouchRef | None, now: int, unmatched: str | None = None) -> bool:
        """Keep the outcome, joined to `touch` (None: kept aside with `unmatched` as the reason); False, and nothing
        written, when its event id was recorded before."""

    @abstractmethod
    def for_provider_id(self, provider_id: str) -> list[dict[str, Any]]:
        """Every outcome recorded for one provider message id, oldest first (the records `outcome_item` makes)."""

    @abstractmethod
    def between(self, start: int, end: int) -> list[dict[str, Any]]:
        """Every outcome that occurred in [start, end) (epoch seconds), matched or kept aside, by occurrence then
        event id (what the daily export to the warehouse reads)."""

    @abstractmethod
    def add_opt_out(self, customer_id: str, channel: str, now: int) -> None:
        """Record that the customer opted out of the channel (`marketing`: of every channel)."""

    @abstractmethod
    def opted_out(self, customer_ids: Iterable[str]) -> dict[str, set[str]]:
        """{customer: channels opted out of} for those of these customers with any."""

    @abstractmethod
    def erase_customers(self, customer_ids: Iterable[str]) -> int:
        """GDPR: every outcome and opt-out of these customers removed; how many rows or items."""
