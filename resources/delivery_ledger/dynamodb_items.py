"""The DynamoDB delivery ledger's items (layout in `resources.delivery_ledger.dynamodb`'s docstring): keys, a touch
item as a `LedgerRow`, a plan row as a touch item, the index attributes a transition adds or removes, and the
contact items a transaction reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from resources.delivery_ledger.base import HELD_OUT, KEY_COLUMNS, LedgerRow, plan_payload
from resources.dynamodb import Update, plain_item, sortable_int

DUE, DOUBT, PROG, CUST, PROV = "due", "doubt", "prog", "cust", "prov"
PROGRAMS = "PROGRAMS"  # the pk of the program registry items (`counts()` walks them without a Scan)
CONTACT_RETENTION_S = 395 * 86_400  # longer than any cap window (the longest is a year)
PRUNE_PER_CLAIM = 20  # old contact entries one claim removes (keeps its update expression small)
# LedgerRow's fields in order, as attribute names: the plan's key columns, then the delivery state.
ROW_ATTRS = KEY_COLUMNS + (
    "nextAttemptAt",
    "state",
    "reason",
    "attempts",
    "claimToken",
    "claimedAt",
    "sentAt",
    "providerId",
    "payload",
)


def touch_pk(touch_key: str) -> dict[str, Any]:
    """The key of a touch item."""
    return {"pk": {"S": f"T#{touch_key}"}, "sk": {"S": "T"}}


def customer_pk(customer_id: str) -> dict[str, Any]:
    """The key of a customer's contact item."""
    return {"pk": {"S": f"C#{customer_id}"}, "sk": {"S": "C"}}


def suppression_pk(channel: str, hashed_address: str) -> dict[str, Any]:
    """The key of a suppression-list item (the address only as its hash)."""
    return {"pk": {"S": f"S#{channel}#{hashed_address}"}, "sk": {"S": "S"}}


def to_row(raw: dict[str, Any]) -> LedgerRow:
    """A raw touch item as the row SQLite would return (absent attributes None, attempts 0)."""
    d = plain_item(raw)
    d.setdefault("attempts", 0)
    values: list[Any] = [d.get(a) for a in ROW_ATTRS]
    return LedgerRow(*values)


def leave_planned(u: Update) -> Update:
    """The touch leaves `planned`: out of the `due` index."""
    return u.remove("duePk", "dueSk")


def leave_sending(u: Update) -> Update:
    """The touch leaves `sending`: out of the `doubt` index."""
    return u.remove("doubtPk", "doubtSk")


def due_again(u: Update, touch_key: str, at: int) -> Update:
    """The touch is due at `at`: its next attempt time and `due` sort key."""
    return u.set(nextAttemptAt=at, dueSk=f"{sortable_int(at)}#{touch_key}")


def plan_item(r: dict[str, Any], now: int) -> dict[str, Any]:
    """A plan row as a touch item (without attempts/nextAttemptAt/due index, which depend on what exists)."""
    holdout = bool(r["holdout"])
    return {
        "touchKey": r["touchKey"],
        "programId": r["programId"],
        "partitionKey": r["partitionKey"],
        "customerId": str(r["customerId"]),
        "subjectId": str(r["subjectId"]),
        "touchId": str(r["touchId"]),
        "channel": r["channel"],
        "channelId": r["channelId"],
        "templateId": r["templateId"],
        "dueAt": int(r["dueAt"]),
        "expiresAt": None if r["expiresAt"] is None else int(r["expiresAt"]),
        "state": "suppressed" if holdout else "planned",
        "reason": HELD_OUT if holdout else None,
        "updatedAt": now,
        "payload": plan_payload(r),
        "progPk": r["programId"],
        "progSk": f"{r['partitionKey']}#{r['touchKey']}",
        "custPk": str(r["customerId"]),
    }


@dataclass
class Contacts:
    """A customer's contact item as read in one transaction (version 0: no item)."""

    version: int
    entries: dict[str, list[Any]]  # touchKey -> [programId, subjectId, channel, claimedAt]
    stale: bool = False  # a claim found the version moved: the pressure read for this customer is out of date


@dataclass
class DynamoDbLedgerTransaction:
    """What `transaction()` yields (the engine's `conn`): the contact items read by `contacts_since`, so the
    claims that follow are conditional on them (CLAIM RULE in `resources.delivery_ledger.dynamodb_claims`)."""

    customers: dict[str, Contacts] = field(default_factory=dict)
    since: int | None = None  # the oldest contact time read: entries newer than it are never pruned
