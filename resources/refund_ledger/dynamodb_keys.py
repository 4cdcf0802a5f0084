"""The DynamoDB refund ledger's keys and values (layout in `resources.refund_ledger.dynamodb`'s docstring)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from resources.dynamodb import deserialize
from resources.refund_ledger.base import Offer

QUEUE = "queue"
OUTBOX = "outbox"  # sparse GSI of processed issuances whose event is not acknowledged yet
KINDS = ("credit", "refund")  # an issuance's sort key; `issued` lists them in this order, as SQLite's ORDER BY kind
CODE_SK = "code"
_INTS = {"createdAt", "decidedAt", "publishedAt"}  # every other Number is money (float out, Decimal in)
# The columns SQLite returns, as attributes here.
PENDING_ATTRS = (
    ("program_id", "programId"),
    ("partition_key", "partitionKey"),
    ("customer_id", "customerId"),
    ("subject_id", "subjectId"),
    ("kind", "kind"),
    ("refund_type", "refundType"),
    ("amount", "amount"),
    ("currency", "currency"),
    ("amount_usd", "amountUsd"),
    ("created_at", "createdAt"),
)
ISSUED_ATTRS = (
    ("kind", "kind"),
    ("refund_type", "refundType"),
    ("amount", "amount"),
    ("currency", "currency"),
    ("amount_usd", "amountUsd"),
    ("code", "code"),
    ("state", "state"),
)


def key_part(value: str) -> str:
    """An id as a key part: '%' and '#' escaped, so `a#b` + `c` and `a` + `b#c` stay two keys."""
    return str(value).replace("%", "%25").replace("#", "%23")


def candidate_part(program_id: str, customer: str, subject: str) -> str:
    """The candidate's part of its keys, and of its issuance ids."""
    return f"{key_part(program_id)}#{key_part(customer)}#{key_part(subject)}"


def item_key(pk: str, sk: str) -> dict[str, Any]:
    """A (pk, sk) key in the low-level form."""
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def candidate_key(program_id: str, customer: str, subject: str, sk: str) -> dict[str, Any]:
    """The key of a candidate's issuance (sk = its kind) or code (sk = CODE_SK)."""
    return item_key(f"K#{candidate_part(program_id, customer, subject)}", sk)


def budget_key(program_id: str, partition_key: str) -> dict[str, Any]:
    """The key of a partition's budget item."""
    return item_key(f"B#{key_part(program_id)}#{key_part(partition_key)}", "B")


def code_name_key(code: str) -> dict[str, Any]:
    """The key of a taken code (what makes codes unique)."""
    return item_key(f"CODE#{code}", "CODE")


def issuance_key(issuance_id: str) -> dict[str, Any] | None:
    """The key of an issuance id (None: not one of this ledger's ids)."""
    head, _, kind = str(issuance_id).rpartition("#")
    return item_key(f"K#{head}", kind) if kind in KINDS and head.count("#") == 2 else None


def money(value: Any) -> Decimal:
    """An amount as DynamoDB stores it: an exact Decimal (boto3 refuses floats)."""
    return Decimal(str(value))


def offer_cost(offer: Offer) -> Decimal:
    """What a candidate's parts count against the budget, in exact cents."""
    return sum((money(p.amount_usd) for p in offer.parts), Decimal(0))


def item_values(raw: dict[str, Any]) -> dict[str, Any]:
    """An item as plain values: money as float, times as int (as SQLite returns them)."""
    out = {}
    for name, value in raw.items():
        v = deserialize(value)
        out[name] = (int(v) if name in _INTS else float(v)) if isinstance(v, Decimal) else v
    return out


def committed(codes: list[str] | None) -> bool:
    """A transaction's outcome: committed, or a condition failed; anything else raises (the cancellation codes
    name no customer)."""
    if codes is None:
        return True
    if "ConditionalCheckFailed" in codes:
        return False
    raise RuntimeError(f"refund ledger transaction cancelled: {codes}; re-running is safe")
