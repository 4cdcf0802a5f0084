"""Engagement store: what the serving API hands to people and devices, beside the candidate store.

- In-app inbox: the in-app channel's messages (churn prevention's `displayDuration` days), `active` -> `seen` /
  `dismissed`.  Written by delivery (`upsert_inbox_message`, idempotent by the delivery ledger's `messageId`).
- Call tasks: the phone channel for account managers.  `open` -> `claimed` (by one agent, until a claim expiry)
  -> `completed` with an outcome.  A claim is one atomic conditional write, so two agents never hold a task.  A task
  may be assigned to one account manager (`assignedTo`, once, by the program's call assignment job); only that
  agent may then claim it.
- GDPR deletion records: the bare customerId (a pseudonymous internal id; never email, phone or name) and when,
  so batch runs, deliveries and exports exclude a deleted customer.  Writes for a deleted customer are refused.
- API keys: only a SHA-256 of the key's secret is stored, with its scopes and rate limit.

Two implementations, one contract (tests/test_engagement_store.py): SQLite (`resources.engagement.sqlite`: WAL,
busy timeout, safe for several processes: each write is one statement or one BEGIN IMMEDIATE transaction) and
DynamoDB (`resources.engagement.dynamodb`: one table, conditional writes).  Times are int epoch seconds and injectable (`now`) so tests pin the clock.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import dagster as dg

from resources.store.base import decode_cursor, encode_cursor

Record = dict[str, Any]

INBOX_STATES = ("active", "seen", "dismissed")
CALL_OUTCOMES = ("accepted", "declined", "no_answer", "callback")

INBOX_FIELDS = (
    "messageId",
    "customerId",
    "programId",
    "messageType",
    "templateId",
    "offer",
    "score",
    "displayFrom",
    "displayUntil",
)
TASK_FIELDS = (
    "taskId",
    "customerId",
    "programId",
    "segment",
    "scriptId",
    "callType",
    "score",
    "offer",
    "dueAt",
    "priority",
)


def now_epoch(now: float | None) -> int:
    """`now` as int epoch seconds (injectable so tests pin the clock; None: the wall clock)."""
    return int(time.time() if now is None else now)


def require_fields(obj: Record, fields: tuple[str, ...], what: str) -> None:
    """Check a message's or task's fields.  Errors name the field, never a value (customer ids and offers stay out
    of logs)."""
    missing = [f for f in fields if f not in obj]
    if missing:
        raise ValueError(f"{what} lacks field(s) {missing}")
    for f in (fields[0], "customerId", "programId"):
        if not isinstance(obj[f], str) or not obj[f]:
            raise ValueError(f"{what}: {f} must be a non-empty string")
    for f in ("displayFrom", "displayUntil", "dueAt", "priority"):
        if f in fields and (isinstance(obj[f], bool) or not isinstance(obj[f], int)):
            raise ValueError(f"{what}: {f} must be an int")
    if not isinstance(obj.get("offer"), dict):
        raise ValueError(f"{what}: offer must be a dict")
    score = obj.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        raise ValueError(f"{what}: score must be a number or None")


def due_key(due_at: int, priority: int, task_id: str) -> str:
    """Sort key of the due list: earliest due first, then highest priority, then id (a total order for cursors)."""
    return f"{int(due_at):012d}#{999_999 - max(0, min(int(priority), 999_999)):06d}#{task_id}"


def encode_task_cursor(program_id: str, due_key: str) -> str:
    """The cursor of the due-task list after the task with this due key."""
    return encode_cursor("call-tasks", program_id, due_key)


def decode_task_cursor(cursor: str, program_id: str) -> str:
    """The due key a cursor of this program's due-task list resumes after (ValueError: not such a cursor)."""
    pos = decode_cursor(cursor, "call-tasks", program_id)
    if not isinstance(pos, str):
        raise ValueError("invalid cursor for this query")
    return pos


class EngagementStore(dg.ConfigurableResource, ABC):
    """In-app inbox, call tasks, GDPR deletion records and API keys (see the module docstring)."""

    # -- in-app inbox ------------------------------------------------------------------------------------------
    @abstractmethod
    def upsert_inbox_message(self, message: Record) -> bool:
        """Insert a message in state `active`; False (and nothing changed) if its messageId exists already or the
        customer has been deleted."""

    @abstractmethod
    def get_inbox_message(self, message_id: str) -> Record | None:
        """One inbox message (any customer's), or None."""

    @abstractmethod
    def inbox_messages(self, customer_id: str, now: float | None = None, limit: int = 100) -> list[Record]:
        """The customer's messages inside their display window and not dismissed, soonest to end first."""

    @abstractmethod
    def set_inbox_state(self, customer_id: str, message_id: str, state: str, now: float | None = None) -> Record | None:
        """Mark the customer's message `seen` or `dismissed` (dismissed is final; seen never undoes dismissed).
        None when the customer has no such message."""

    # -- call tasks --------------------------------------------------------------------------------------------
    @abstractmethod
    def create_call_task(self, task: Record) -> bool:
        """Insert a task in state `open`; False (and nothing changed) if its taskId exists already or the customer
        has been deleted."""

    @abstractmethod
    def get_call_task(self, task_id: str) -> Record | None:
        """One call task, or None."""

    @abstractmethod
    def due_call_tasks(
        self,
        program_id: str,
        due_before: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> tuple[list[Record], str | None]:
        """Claimable tasks of a program (open, or claimed with an expired claim), earliest due first."""

    @abstractmethod
    def claim_call_task(
        self, task_id: str, agent_id: str, claim_seconds: int, now: float | None = None
    ) -> Record | None:
        """Atomically give the task to `agent_id` until now + claim_seconds, if it is open, its claim expired, or
        the agent already holds it (a renewal).  None when someone else holds it, it is completed or unknown."""

    @abstractmethod
    def complete_call_task(self, task_id: str, agent_id: str, outcome: str, now: float | None = None) -> Record | None:
        """Complete a task the agent holds under a live claim; None otherwise."""

    # -- assignment to account managers (`engage_assets.domain.call_assignment`) -----------------------------------
    @abstractmethod
    def unassigned_call_tasks(self, program_id: str, limit: int = 1000) -> list[Record]:
        """Open tasks of a program that no one was assigned, earliest due first (then priority)."""

    @abstractmethod
    def assigned_open_counts(self, program_id: str) -> dict[str, int]:
        """Per assignee, how many of the program's tasks assigned to them are not completed."""

    @abstractmethod
    def assign_call_task(self, task_id: str, agent_id: str, now: float | None = None) -> bool:
        """Assign an unassigned, not completed task to `agent_id` (one conditional write); False when it is
        assigned already, completed or unknown: a task is never assigned twice."""

    @abstractmethod
    def assigned_call_tasks(
        self, program_id: str, agent_id: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Record], str | None]:
        """The program's tasks assigned to `agent_id` and not completed, earliest due first, keyset-paged."""

    # -- GDPR --------------------------------------------------------------------------------------------------
    @abstractmethod
    def delete_customer(self, customer_id: str, now: float | None = None) -> dict[str, int]:
        """Record the deletion, then remove the customer's inbox messages and call tasks; returns counts."""

    @abstractmethod
    def is_deleted(self, customer_id: str) -> bool:
        """Whether the customer's deletion was recorded."""

    @abstractmethod
    def deleted_customers(self) -> set[str]:
        """Every deleted customer."""

    def deleted_among(self, customer_ids: Iterable[str]) -> set[str]:
        """Those of `customer_ids` that have been deleted (a page of due touches at a time: one call per page)."""
        return {c for c in customer_ids if self.is_deleted(c)}

    # -- API keys ----------------------------------------------------------------------------------------------
    @abstractmethod
    def create_api_key(self, key: Record) -> bool:
        """Store {keyId, keyHash, scopes, name, ratePerSecond, burst, createdAt}; False if keyId exists."""

    @abstractmethod
    def get_api_key(self, key_id: str) -> Record | None:
        """One API key record (hash, scopes, limits, revokedAt), or None."""

    @abstractmethod
    def list_api_keys(self) -> list[Record]:
        """Every API key record."""

    @abstractmethod
    def revoke_api_key(self, key_id: str, now: float | None = None) -> bool:
        """Revoke a key once; False if unknown or already revoked."""
