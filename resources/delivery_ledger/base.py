"""The delivery ledger's contract: the touch plan's columns, the states, the row type, key helpers, and the
`DeliveryLedgerBackend` protocol that both backends (SQLite: `resources.delivery_ledger.sqlite`; DynamoDB:
`resources.delivery_ledger.dynamodb`) satisfy and that the engine, sensors, assets and serving API call.

The state machine and the claim/recovery rules are described in `resources.delivery_ledger.sqlite`'s docstring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import astuple, dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

STATES = ("planned", "sending", "sent", "suppressed", "failed", "stale")
HELD_OUT = "held_out"

# The planner's columns (engage_assets.domain.plan.plan_touches) the ledger keeps as real columns; the rest of
# a plan row travels in `payload` (JSON) and comes back in `touch_dict`.
KEY_COLUMNS = (
    "touchKey",
    "programId",
    "partitionKey",
    "customerId",
    "subjectId",
    "touchId",
    "channel",
    "channelId",
    "templateId",
    "dueAt",
    "expiresAt",
)
PAYLOAD_COLUMNS = (
    "conditions",
    "segment",
    "offerType",
    "offer",
    "holdout",
    "marketplace",
    "timeZone",
    "currency",
    "score",
)
PLAN_COLUMNS = KEY_COLUMNS + PAYLOAD_COLUMNS


def idempotency_key(touch_key: str) -> str:
    """The provider-facing idempotency key of a touch: stable, fixed length, and free of customer ids."""
    return hashlib.sha256(b"engage-delivery-v1:" + touch_key.encode()).hexdigest()[:40]


def key_hash(touch_key: str) -> str:
    """A short stable reference to a touch for logs and errors (never the key itself: it holds a customer id)."""
    return hashlib.sha256(touch_key.encode()).hexdigest()[:12]


def plan_payload(row: dict[str, Any]) -> str:
    """The JSON a plan row's non-key columns are kept as (the same bytes in both backends)."""
    return json.dumps({c: row[c] for c in PAYLOAD_COLUMNS}, separators=(",", ":"))


def check_plan(table: pa.Table) -> None:
    """A touch plan must hold every plan column (ValueError names the missing ones)."""
    missing = [c for c in PLAN_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"touch plan lacks column(s) {missing}")


@dataclass(frozen=True)
class LedgerRow:
    """One touch as the ledger holds it (SQLite's NULL / DynamoDB's absent attribute is None)."""

    touch_key: str
    program_id: str
    partition_key: str
    customer_id: str
    subject_id: str
    touch_id: str
    channel: str
    channel_id: str
    template_id: str | None
    due_at: int
    expires_at: int | None
    next_attempt_at: int
    state: str
    reason: str | None
    attempts: int
    claim_token: str | None
    claimed_at: int | None
    sent_at: int | None
    provider_id: str | None
    payload: str

    def touch_dict(self) -> dict[str, Any]:
        """The plan row as the planner produced it (the shape `recheck` and `render` take)."""
        d = json.loads(self.payload)
        d.update(
            touchKey=self.touch_key,
            programId=self.program_id,
            partitionKey=self.partition_key,
            customerId=self.customer_id,
            subjectId=self.subject_id,
            touchId=self.touch_id,
            channel=self.channel,
            channelId=self.channel_id,
            templateId=self.template_id,
            dueAt=self.due_at,
            expiresAt=self.expires_at,
        )
        return d


@dataclass(frozen=True)
class PlanResult:
    """What `plan` did with a partition's touch plan."""

    inserted: int  # new touches (planned or held out)
    replaced: int  # touches still planned whose plan row was rewritten
    removed: int  # planned touches of the partition the new plan no longer has
    kept: int  # touches already past `planned` (sending/sent/suppressed/failed): left as they are
    held_out: int  # holdout rows of this plan (recorded as suppressed/held_out, never sent)


def plan_each_partition(ledger: DeliveryLedgerBackend, table: pa.Table, program_id: str, now: int) -> PlanResult:
    """`plan_partitions` as one `plan` per partition, the results summed (for a backend with no cheaper batch)."""
    check_plan(table)
    total = PlanResult(0, 0, 0, 0, 0)
    keys = table.column("partitionKey")
    for key in sorted(set(keys.to_pylist())):
        r = ledger.plan(table.filter(pc.equal(keys, key)), program_id, key, now)
        total = PlanResult(*(a + b for a, b in zip(astuple(total), astuple(r), strict=True)))
    return total


class DeliveryLedgerBackend(Protocol):
    """What the engine, the sensors, the assets and the serving API call on a delivery ledger.  `conn` is what
    `transaction()` yields (a SQLite connection, or the DynamoDB ledger's read set); the methods that take it run
    inside that transaction."""

    def close(self) -> None:
        """Release what the ledger holds open (connections)."""

    def transaction(self) -> AbstractContextManager[Any]:
        """The scope of one page's pressure read and claims."""

    def plan(self, table: pa.Table, program_id: str, partition_key: str, now: int) -> PlanResult:
        """Insert a partition's touch plan; re-planning replaces only touches still `planned`, never un-sends."""

    def plan_partitions(self, table: pa.Table, program_id: str, now: int) -> PlanResult:
        """`plan` for every partition in the table's `partitionKey` column (a reactive batch: one per cart)."""

    def partition_subjects(self, program_id: str, start: str, end: str) -> dict[str, tuple[str, str]]:
        """{partition_key: (customer_id, subject_id)} of one touch of each of the program's partitions with
        start <= partition_key < end (a reactive program's partition is one cart: `<abandoned at>Z~<cart id>`)."""

    def suppress_planned(self, program_id: str, partition_keys: Iterable[str], reason: str, now: int) -> int:
        """Every touch of these partitions still `planned` → suppressed with `reason` (a touch claimed, sent or
        already suppressed is left as it is); how many changed."""

    def due(self, program_id: str, now: int, page_size: int = 500) -> Iterator[list[LedgerRow]]:
        """Pages of touches in `planned` with next_attempt_at <= now, oldest first."""

    def in_doubt(self, program_id: str, claimed_before: int, page_size: int = 500) -> Iterator[list[LedgerRow]]:
        """Pages of touches left in `sending` whose claim is older than `claimed_before`."""

    def get(self, touch_key: str) -> LedgerRow | None:
        """One touch, or None."""

    def due_summary(self, program_id: str, now: int) -> tuple[int, int | None]:
        """(number of due touches, latest next_attempt_at among them)."""

    def next_due_at(self, program_id: str) -> int | None:
        """The earliest next_attempt_at of a planned touch, or None."""

    def counts(self, program_id: str | None = None) -> dict[tuple[str, str, str, str | None], int]:
        """{(programId, channel, state, reason): n}."""

    def sent_touches(self, program_id: str, start: str, end: str) -> list[LedgerRow]:
        """The program's touches in `sent` with start <= partition_key < end (the platform's contact history)."""

    def find_sent(self, provider_id: str) -> LedgerRow | None:
        """The sent touch whose provider message id is `provider_id` (an outcome webhook's join), or None."""

    def contacts_since(
        self, conn: Any, customer_ids: Iterable[str], since: int
    ) -> list[tuple[str, str, str, str, int]]:
        """(customer_id, program_id, subject_id, channel, claimed_at) of touches claimed or sent since `since`."""

    def erase_customer(self, customer_id: str) -> int:
        """GDPR erasure of one customer's touches; how many were removed."""

    def erase_customers(self, customer_ids: Iterable[str]) -> int:
        """GDPR erasure of several customers' touches; how many were removed."""

    def add_suppression(self, channel: str, address: str, reason: str, now: int) -> None:
        """Put an address on the suppression list; first reason wins."""

    def suppressed_addresses(self, conn: Any, channel: str, addresses: Iterable[str]) -> dict[str, str]:
        """{normalized address: reason} of the given addresses on the channel's suppression list (kept as keyed
        hashes: `resources.delivery_ledger.suppression`)."""

    def claim(self, conn: Any, touch_key: str, token: str, now: int) -> bool:
        """planned → sending with our token; False if another process got there first."""

    def reclaim(self, touch_key: str, old_token: str | None, token: str, now: int) -> bool:
        """Take over an in-doubt claim (sending with `old_token`)."""

    def suppress(self, conn: Any, touch_key: str, reason: str, now: int, token: str | None = None) -> bool:
        """planned (or our claimed touch) → suppressed with a reason."""

    def defer(self, conn: Any, touch_key: str, until: int, reason: str, now: int) -> bool:
        """Keep a planned touch planned but not due before `until`."""

    def mark_stale(self, conn: Any, touch_key: str, reason: str, now: int) -> bool:
        """planned → stale with a reason: planned too long ago to be sent (never sent)."""

    def reopen_stale(self, program_id: str, now: int) -> int:
        """Every `stale` touch of the program → planned, due at `now` (a run told to send stale touches); how many."""

    def mark_sent(self, touch_key: str, token: str, provider_id: str, now: int, reason: str | None = None) -> bool:
        """sending (with our token) → sent."""

    def mark_sent_many(self, marks: Iterable[tuple[str, str, str | None]], token: str, now: int) -> int:
        """`mark_sent` for many (touch_key, provider_id, reason); how many were marked."""

    def mark_failed(self, touch_key: str, token: str, reason: str, now: int) -> bool:
        """sending (with our token) → failed."""

    def mark_retry(self, touch_key: str, token: str, reason: str, next_attempt_at: int, now: int) -> bool:
        """sending → planned, due again at `next_attempt_at`."""
