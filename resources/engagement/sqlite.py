"""The embedded engagement store: one SQLite file in WAL mode (the contract is `resources.engagement.base`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson  # reads the stored JSON bodies ~5x faster than json.loads (the serving API's list routes)

from resources.engagement.base import (
    CALL_OUTCOMES,
    INBOX_FIELDS,
    TASK_FIELDS,
    EngagementStore,
    Record,
    decode_task_cursor,
    due_key,
    encode_task_cursor,
    now_epoch,
    require_fields,
)
from resources.sqlite_wal import SqliteFileResource, write_transaction

# Version 1: the first versioned schema (a file written before versioning, at user_version 0, has it already).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS inbox (
    message_id    TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL,
    program_id    TEXT NOT NULL,
    display_from  INTEGER NOT NULL,
    display_until INTEGER NOT NULL,
    state         TEXT NOT NULL,
    updated_at    INTEGER,
    body          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_customer ON inbox (customer_id, display_until);
CREATE TABLE IF NOT EXISTS call_tasks (
    task_id          TEXT PRIMARY KEY,
    customer_id      TEXT NOT NULL,
    program_id       TEXT NOT NULL,
    due_key          TEXT NOT NULL,
    due_at           INTEGER NOT NULL,
    state            TEXT NOT NULL,
    claimed_by       TEXT,
    claim_expires_at INTEGER,
    outcome          TEXT,
    completed_at     INTEGER,
    body             TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_tasks_due ON call_tasks (program_id, due_key) WHERE state <> 'completed';
CREATE INDEX IF NOT EXISTS call_tasks_customer ON call_tasks (customer_id);
CREATE TABLE IF NOT EXISTS deletions (
    customer_id TEXT PRIMARY KEY,
    deleted_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    key_id     TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL,
    revoked_at INTEGER,
    body       TEXT NOT NULL
) WITHOUT ROWID;
"""

# The file's migrations, applied in order on open (`resources.sqlite_migrations`; PRAGMA user_version = how many a
# file has had).  Append a new one; never edit one that has shipped.
# Version 2: call tasks assigned to an account manager (the churn program's Monday assignment job); the index lists
# an agent's open assigned tasks and counts each agent's load.
ASSIGNMENT_V2 = """
ALTER TABLE call_tasks ADD COLUMN assigned_to TEXT;
ALTER TABLE call_tasks ADD COLUMN assigned_at INTEGER;
CREATE INDEX IF NOT EXISTS call_tasks_assigned ON call_tasks (program_id, assigned_to, due_key)
    WHERE state <> 'completed' AND assigned_to IS NOT NULL;
"""

MIGRATIONS = (SCHEMA_V1, ASSIGNMENT_V2)

_NOT_DELETED = "NOT EXISTS (SELECT 1 FROM deletions WHERE customer_id = ?)"


class SqliteEngagementStore(SqliteFileResource, EngagementStore):
    """The embedded engagement store: one SQLite file in WAL mode, a connection per (process, thread)."""

    MIGRATIONS = MIGRATIONS

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with write_transaction(self._conn()) as conn:
            yield conn

    # -- inbox -------------------------------------------------------------------------------------------------

    def upsert_inbox_message(self, message: Record) -> bool:
        """See `EngagementStore.upsert_inbox_message`: a new message, unless it exists or its customer was deleted."""
        require_fields(message, INBOX_FIELDS, "inbox message")
        body = {f: message[f] for f in INBOX_FIELDS} | {"state": "active", "updatedAt": None}
        cur = self._conn().execute(
            "INSERT INTO inbox (message_id, customer_id, program_id, display_from, display_until, state, body)"
            f" SELECT ?, ?, ?, ?, ?, 'active', ? WHERE {_NOT_DELETED}"
            " ON CONFLICT (message_id) DO NOTHING",
            (
                message["messageId"],
                message["customerId"],
                message["programId"],
                int(message["displayFrom"]),
                int(message["displayUntil"]),
                json.dumps(body),
                message["customerId"],
            ),
        )
        return cur.rowcount == 1

    @staticmethod
    def _inbox_row(row: tuple) -> Record:
        body, state, updated_at = row
        return orjson.loads(body) | {"state": state, "updatedAt": updated_at}

    def get_inbox_message(self, message_id: str) -> Record | None:
        """One inbox message, or None."""
        row = (
            self._conn()
            .execute("SELECT body, state, updated_at FROM inbox WHERE message_id = ?", (message_id,))
            .fetchone()
        )
        return None if row is None else self._inbox_row(row)

    def inbox_messages(self, customer_id: str, now: float | None = None, limit: int = 100) -> list[Record]:
        """The customer's live, undismissed messages, soonest to end first."""
        now_ = now_epoch(now)
        rows = (
            self._conn()
            .execute(
                "SELECT body, state, updated_at FROM inbox WHERE customer_id = ? AND display_until > ?"
                " AND display_from <= ? AND state <> 'dismissed' ORDER BY display_until, message_id LIMIT ?",
                (customer_id, now_, now_, int(limit)),
            )
            .fetchall()
        )
        return [self._inbox_row(r) for r in rows]

    def set_inbox_state(self, customer_id: str, message_id: str, state: str, now: float | None = None) -> Record | None:
        """See `EngagementStore.set_inbox_state`: seen or dismissed (dismissed is final)."""
        if state not in ("seen", "dismissed"):
            raise ValueError("state must be 'seen' or 'dismissed'")
        # 'seen' never overrides 'dismissed'; repeating a transition is a no-op that still returns the message.
        self._conn().execute(
            "UPDATE inbox SET state = ?, updated_at = ? WHERE message_id = ? AND customer_id = ?"
            " AND state <> 'dismissed' AND state <> ?",
            (state, now_epoch(now), message_id, customer_id, state),
        )
        row = (
            self._conn()
            .execute(
                "SELECT body, state, updated_at FROM inbox WHERE message_id = ? AND customer_id = ?",
                (message_id, customer_id),
            )
            .fetchone()
        )
        return None if row is None else self._inbox_row(row)

    # -- call tasks --------------------------------------------------------------------------------------------

    def create_call_task(self, task: Record) -> bool:
        """See `EngagementStore.create_call_task`: a new open task, unless it exists or its customer was deleted."""
        require_fields(task, TASK_FIELDS, "call task")
        body = {f: task[f] for f in TASK_FIELDS}
        cur = self._conn().execute(
            "INSERT INTO call_tasks (task_id, customer_id, program_id, due_key, due_at, state, body)"
            f" SELECT ?, ?, ?, ?, ?, 'open', ? WHERE {_NOT_DELETED}"
            " ON CONFLICT (task_id) DO NOTHING",
            (
                task["taskId"],
                task["customerId"],
                task["programId"],
                due_key(task["dueAt"], task["priority"], task["taskId"]),
                int(task["dueAt"]),
                json.dumps(body),
                task["customerId"],
            ),
        )
        return cur.rowcount == 1

    _TASK_COLS = "body, state, claimed_by, claim_expires_at, outcome, completed_at, assigned_to, assigned_at"

    @staticmethod
    def _task_row(row: tuple) -> Record:
        body, state, claimed_by, claim_expires_at, outcome, completed_at, assigned_to, assigned_at = row
        return orjson.loads(body) | {
            "state": state,
            "claimedBy": claimed_by,
            "claimExpiresAt": claim_expires_at,
            "outcome": outcome,
            "completedAt": completed_at,
            "assignedTo": assigned_to,
            "assignedAt": assigned_at,
        }

    def get_call_task(self, task_id: str) -> Record | None:
        """One call task, or None."""
        row = self._conn().execute(f"SELECT {self._TASK_COLS} FROM call_tasks WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else self._task_row(row)

    def due_call_tasks(
        self,
        program_id: str,
        due_before: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> tuple[list[Record], str | None]:
        """See `EngagementStore.due_call_tasks`: claimable tasks, earliest due first, keyset-paged."""
        now_ = now_epoch(now)
        sql = (
            f"SELECT {self._TASK_COLS}, due_key FROM call_tasks WHERE program_id = ? AND state <> 'completed'"
            " AND (state = 'open' OR claim_expires_at <= ?)"
        )
        params: list[Any] = [program_id, now_]
        if due_before is not None:
            sql += " AND due_at <= ?"
            params.append(int(due_before))
        if cursor is not None:
            sql += " AND due_key > ?"
            params.append(decode_task_cursor(cursor, program_id))
        sql += " ORDER BY due_key LIMIT ?"
        params.append(int(limit) + 1)
        rows = self._conn().execute(sql, params).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_task_cursor(program_id, rows[-1][-1]) if more else None
        return [self._task_row(r[:-1]) for r in rows], next_cursor

    def claim_call_task(
        self, task_id: str, agent_id: str, claim_seconds: int, now: float | None = None
    ) -> Record | None:
        """See `EngagementStore.claim_call_task`: one conditional write, so two agents never hold a task."""
        now_ = now_epoch(now)
        # One UPDATE: SQLite serialises writers, so the condition and the write are atomic across processes.
        cur = self._conn().execute(
            "UPDATE call_tasks SET state = 'claimed', claimed_by = ?, claim_expires_at = ? WHERE task_id = ?"
            " AND (state = 'open' OR (state = 'claimed' AND (claim_expires_at <= ? OR claimed_by = ?)))"
            " AND (assigned_to IS NULL OR assigned_to = ?)",
            (agent_id, now_ + int(claim_seconds), task_id, now_, agent_id, agent_id),
        )
        return self.get_call_task(task_id) if cur.rowcount == 1 else None

    def complete_call_task(self, task_id: str, agent_id: str, outcome: str, now: float | None = None) -> Record | None:
        """See `EngagementStore.complete_call_task`: only under the agent's live claim."""
        if outcome not in CALL_OUTCOMES:
            raise ValueError(f"outcome must be one of {list(CALL_OUTCOMES)}")
        now_ = now_epoch(now)
        cur = self._conn().execute(
            "UPDATE call_tasks SET state = 'completed', outcome = ?, completed_at = ? WHERE task_id = ?"
            " AND state = 'claimed' AND claimed_by = ? AND claim_expires_at > ?",
            (outcome, now_, task_id, agent_id, now_),
        )
        return self.get_call_task(task_id) if cur.rowcount == 1 else None

    # -- assignment --------------------------------------------------------------------------------------------

    def unassigned_call_tasks(self, program_id: str, limit: int = 1000) -> list[Record]:
        """See `EngagementStore.unassigned_call_tasks`."""
        rows = self._conn().execute(
            f"SELECT {self._TASK_COLS} FROM call_tasks WHERE program_id = ? AND state = 'open'"
            " AND assigned_to IS NULL ORDER BY due_key LIMIT ?",
            (program_id, int(limit)),
        )
        return [self._task_row(r) for r in rows]

    def assigned_open_counts(self, program_id: str) -> dict[str, int]:
        """See `EngagementStore.assigned_open_counts`."""
        rows = self._conn().execute(
            "SELECT assigned_to, count(*) FROM call_tasks WHERE program_id = ? AND state <> 'completed'"
            " AND assigned_to IS NOT NULL GROUP BY assigned_to",
            (program_id,),
        )
        return {agent: int(n) for agent, n in rows}

    def assign_call_task(self, task_id: str, agent_id: str, now: float | None = None) -> bool:
        """See `EngagementStore.assign_call_task`: one conditional UPDATE."""
        cur = self._conn().execute(
            "UPDATE call_tasks SET assigned_to = ?, assigned_at = ? WHERE task_id = ? AND assigned_to IS NULL"
            " AND state <> 'completed'",
            (agent_id, now_epoch(now), task_id),
        )
        return cur.rowcount == 1

    def assigned_call_tasks(
        self, program_id: str, agent_id: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Record], str | None]:
        """See `EngagementStore.assigned_call_tasks`: keyset-paged on the due key."""
        after = decode_task_cursor(cursor, program_id) if cursor is not None else ""
        rows = (
            self._conn()
            .execute(
                f"SELECT {self._TASK_COLS}, due_key FROM call_tasks WHERE program_id = ? AND assigned_to = ?"
                " AND state <> 'completed' AND due_key > ? ORDER BY due_key LIMIT ?",
                (program_id, agent_id, after, int(limit) + 1),
            )
            .fetchall()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_task_cursor(program_id, rows[-1][-1]) if more else None
        return [self._task_row(r[:-1]) for r in rows], next_cursor

    # -- GDPR --------------------------------------------------------------------------------------------------

    def delete_customer(self, customer_id: str, now: float | None = None) -> dict[str, int]:
        """See `EngagementStore.delete_customer`: the deletion record first, then the customer's items."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO deletions (customer_id, deleted_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (customer_id, now_epoch(now)),
            )
            inbox = conn.execute("DELETE FROM inbox WHERE customer_id = ?", (customer_id,)).rowcount
            tasks = conn.execute("DELETE FROM call_tasks WHERE customer_id = ?", (customer_id,)).rowcount
        return {"inboxMessages": inbox, "callTasks": tasks}

    def is_deleted(self, customer_id: str) -> bool:
        """Whether the customer's deletion was recorded."""
        return (
            self._conn().execute("SELECT 1 FROM deletions WHERE customer_id = ?", (customer_id,)).fetchone() is not None
        )

    def deleted_customers(self) -> set[str]:
        """Every deleted customer."""
        return {r[0] for r in self._conn().execute("SELECT customer_id FROM deletions")}

    def deleted_among(self, customer_ids: Iterable[str]) -> set[str]:
        """Those of `customer_ids` that were deleted, 900 ids a query."""
        ids, out = list(dict.fromkeys(customer_ids)), set[str]()
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            out.update(
                r[0]
                for r in self._conn().execute(
                    f"SELECT customer_id FROM deletions WHERE customer_id IN ({', '.join('?' * len(chunk))})", chunk
                )
            )
        return out

    # -- API keys ----------------------------------------------------------------------------------------------

    def create_api_key(self, key: Record) -> bool:
        """Store a key record (only the secret's hash); False if its keyId exists."""
        cur = self._conn().execute(
            "INSERT INTO api_keys (key_id, key_hash, body) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (key["keyId"], key["keyHash"], json.dumps(key)),
        )
        return cur.rowcount == 1

    def get_api_key(self, key_id: str) -> Record | None:
        """One API key record, or None."""
        row = self._conn().execute("SELECT body, revoked_at FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        return None if row is None else orjson.loads(row[0]) | {"revokedAt": row[1]}

    def list_api_keys(self) -> list[Record]:
        """Every API key record (hash, scopes, limits, revokedAt)."""
        rows = self._conn().execute("SELECT body, revoked_at FROM api_keys ORDER BY key_id").fetchall()
        return [orjson.loads(b) | {"revokedAt": r} for b, r in rows]

    def revoke_api_key(self, key_id: str, now: float | None = None) -> bool:
        """Revoke a key once; False if unknown or already revoked."""
        cur = self._conn().execute(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (now_epoch(now), key_id)
        )
        return cur.rowcount == 1
