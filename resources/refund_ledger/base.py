"""The refund ledger's contract and the pure rules both backends share (SQLite: `resources.refund_ledger.sqlite`,
whose docstring describes the ledger; DynamoDB: `resources.refund_ledger.dynamodb`): what a candidate is given,
the order candidates are issued in, discount codes, states, and the `RefundLedgerBackend` protocol.

`new_code` is called through this module by both ledgers (`base.new_code()`), so one stand-in serves both in tests.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from engage_assets.domain.config import ProgramConfig

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 10
MAX_CODE_DRAWS = 8
STATES = ("pending_approval", "processed", "rejected")
# What an issuance's event carries (besides its id), as `unpublished` returns it: ids, amounts, no personal data.
PUBLISH_COLUMNS = tuple(
    "program_id partition_key customer_id subject_id kind refund_type amount currency amount_usd created_at".split()
)


def subject_key(program_id: str, customer_id: str, subject_id: str) -> str:
    """The key a candidate's code is found under: the touch key's first three parts."""
    return f"{program_id}#{customer_id}#{subject_id}"


def new_code() -> str:
    """A fresh discount code: CODE_LENGTH characters drawn with `secrets` from CODE_ALPHABET."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


@dataclass(frozen=True)
class Issuance:
    """One part of what a candidate is given."""

    kind: str  # refund | credit
    refund_type: str  # full | partial | credit
    amount: float  # in `currency`
    currency: str
    amount_usd: float  # what the budget counts


@dataclass
class IssueResult:
    """What one `issue` call did, per candidate."""

    processed: int = 0  # candidates issued now and processed
    pending_approval: int = 0  # candidates issued now into the approval queue
    already_issued: int = 0  # candidates issued by an earlier run (idempotent re-run)
    over_budget: int = 0  # candidates refused: their cost did not fit the budget
    spent_usd: float = 0.0  # the partition's committed spend after this call
    refused: list[str] = field(default_factory=list)  # subject keys refused for budget


def candidate_issuances(program: ProgramConfig, offer: Mapping[str, Any], currency: str) -> list[Issuance]:
    """What one candidate of the refund program is given, from its plan offer (amounts already in `currency`;
    `valueUsd` is the candidate's whole cost in USD, split over its issuances by amount)."""
    refund_type = offer.get("refundType")
    refund, credit = offer.get("refundAmount"), offer.get("creditAmount")
    parts: list[tuple[str, float]] = []
    if refund_type == "full" and refund is not None:
        parts.append(("refund", float(refund)))
    elif refund_type == "partial" and refund is not None:
        parts.append(("credit", float(refund)))  # the spec: "We've added $20 credit to your account"
    if credit is not None:
        parts.append(("credit", float(credit)))
    merged: dict[str, float] = {}
    for kind, amount in parts:
        merged[kind] = merged.get(kind, 0.0) + amount
    total = sum(merged.values())
    value_usd = float(offer.get("valueUsd") or 0.0)
    return [
        Issuance(
            kind, str(refund_type), round(amount, 2), currency, round(value_usd * amount / total, 2) if total else 0.0
        )
        for kind, amount in merged.items()
        if amount > 0
    ]


def plan_rows(rows: pa.Table | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plan, touch or offer rows as dicts, from an Arrow table or any iterable of mappings."""
    return rows.to_pylist() if isinstance(rows, pa.Table) else [dict(r) for r in rows]


def candidate_ids(row: Mapping[str, Any]) -> tuple[str, str]:
    """(customer, subject) of a row in the planner's (customerId) or the ledger's (customer_id) naming; a row
    without a subject is the customer's own."""
    customer = str(row.get("customerId", row.get("customer_id")))
    subject = row.get("subjectId")
    return customer, str(subject if subject is not None else row.get("subject_id", customer))


def candidate_state(states: set[str]) -> str:
    """A candidate's state from its parts': `processed` only when all are, `pending_approval` while any waits."""
    if states == {"processed"}:
        return "processed"
    return "pending_approval" if "pending_approval" in states else "rejected"


@dataclass(frozen=True)
class Offer:
    """A candidate to issue: its ids, its parts, whether it waits for approval, and its cost (USD)."""

    customer: str
    subject: str
    parts: list[Issuance]
    approval: bool


def ranked_offers(program: ProgramConfig, plan: pa.Table | Iterable[Mapping[str, Any]]) -> list[Offer]:
    """The program's candidates in the plan with something to issue, best score first (ties by ids), once each;
    holdout candidates are never contacted and get nothing."""
    strategy = program.refundStrategy
    if strategy is None:
        raise ValueError(f"{program.programId} has no refundStrategy")
    segments = {s.name: s for s in strategy.segments}
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for row in plan_rows(plan):
        if not row.get("holdout"):
            first.setdefault(candidate_ids(row), row)
    out = []
    for (customer, subject), row in sorted(first.items(), key=lambda kv: (-(kv[1].get("score") or 0.0), kv[0])):
        offer = row.get("offer") or {}
        parts = candidate_issuances(
            program, json.loads(offer) if isinstance(offer, str) else dict(offer), str(row.get("currency") or "USD")
        )
        segment = segments.get(str(row["segment"])) if row.get("segment") is not None else None
        approval = bool(segment and segment.requireApproval) or strategy.autoProcess is False
        if parts:
            out.append(Offer(customer, subject, parts, approval))
    return out


class RefundLedgerBackend(Protocol):
    """What delivery, the assets and the approval tools call on a refund ledger (both backends satisfy it)."""

    def close(self) -> None:
        """Release what the ledger holds open (connections)."""

    def issue(
        self,
        program: ProgramConfig,
        plan: pa.Table | Iterable[Mapping[str, Any]],
        partition_key: str,
        now: int | None = None,
        chunk: int = 500,
    ) -> IssueResult:
        """Issue a refund program's candidates, best score first, never past the partition's budget."""

    def spent_usd(self, program_id: str, partition_key: str) -> float:
        """The partition's committed spend (every state but rejected)."""

    def pending(self, program_id: str, limit: int = 1_000) -> list[dict[str, Any]]:
        """The approval queue, oldest first."""

    def approve(self, issuance_ids: Iterable[str], approver: str, now: int | None = None) -> int:
        """Approve queued issuances; how many were."""

    def reject(self, issuance_ids: Iterable[str], approver: str, now: int | None = None) -> int:
        """Reject queued issuances (their amount no longer counts); how many were."""

    def issued(self, program_id: str, customer_id: str, subject_id: str) -> list[dict[str, Any]]:
        """A candidate's issuances."""

    def states(self, program_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The state of each (customer, subject)'s issuance; keys never issued are absent."""

    def issue_codes(
        self,
        program: ProgramConfig | str,
        rows: pa.Table | Iterable[Mapping[str, Any]],
        partition_key: str | None = None,
        now: int | None = None,
    ) -> dict[str, str]:
        """{subject_key: code} for these rows, drawn once per candidate."""

    def codes_for(self, program_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Codes already issued (read only)."""

    def unpublished(self, program_id: str, limit: int = 1_000) -> list[dict[str, Any]]:
        """Processed issuances whose event the order and billing systems have not acknowledged, oldest first
        (`issuance_id` and PUBLISH_COLUMNS; `resources.refund_events`)."""

    def mark_published(self, issuance_ids: Iterable[str], now: int | None = None) -> int:
        """Record the acknowledgement of these issuances' events (issued → published); how many were."""
