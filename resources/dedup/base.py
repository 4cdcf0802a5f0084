"""The de-duplication interface: claim an event's key once within a time to live, across processes and retries.

An event (`{customerId}:{cartId}:{programId}` for the abandoned-cart program) is delivered at least once, possibly
several times, in any order.  A consumer `claim`s the batch's keys before it acts: it gets back the keys nobody
holds, and acts on those events only.  A claim is `pending` until the consumer `complete`s it (then it stands for
`ttl_s`) or `release`s it (its work failed: a redelivery may claim the key again).  A pending claim whose consumer
died is taken over after `lease_s`; until then `in_flight` reports it, so the consumer can hand the event back to
its queue (to be retried later) instead of dropping it as a duplicate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import dagster as dg
from pydantic import Field

PENDING = "pending"
DONE = "done"


class DedupStore(dg.ConfigurableResource, ABC):
    """Claims on event keys: a key is acted on once within its time to live."""

    lease_s: int = Field(default=300, ge=1, description="How long a pending claim blocks others (its owner died).")

    @abstractmethod
    def claim(self, keys: Sequence[str], ttl_s: int, now: float) -> set[str]:
        """Claim the keys nobody holds (absent, expired, or a pending claim older than `lease_s`): those come
        back, now pending until `now + ttl_s`.  A key given twice is claimed once."""

    @abstractmethod
    def complete(self, keys: Sequence[str], now: float) -> None:
        """Mark pending claims done: the keys stay claimed until their expiry."""

    @abstractmethod
    def release(self, keys: Sequence[str]) -> None:
        """Drop pending claims (the work failed or was handed back): the keys may be claimed again."""

    @abstractmethod
    def in_flight(self, keys: Sequence[str], now: float) -> set[str]:
        """Which of the keys another consumer holds pending, within its lease (not done, not expired)."""

    def purge_expired(self, now: float) -> int:
        """Physically delete expired claims; how many.  A backend whose TTL sweeper deletes them (DynamoDB) deletes
        nothing here: it returns 0."""
        return 0
