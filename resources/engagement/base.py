"""Engagement store: what the serving API hands to people and devices, beside the candidate store.

- In-app inbox: the in-app channel's messages (churn prevention's `displayDuration` days), `active` -> `seen` /
  `dismissed`.  Written by delivery (`upsert_inbox_message`, idempotent by the delivery ledger's `messageId`).
- Call tasks: the phone channel for account managers.  `open` -> `claimed` (by one agent, until a claim expiry)
  -> `completed` with an outcome.  A claim is one atomic conditional write, so two agents never hold a task.
- GDPR deletion records: the bare customerId (a pseudonymous internal id; never email, phone or name) and when,
  so batch runs, deliveries and exports exclude a deleted customer.  Writes for a deleted customer are refused.
- API keys: only a SHA-256 of the key's secret is stored, with its scopes and rate limit.

Two implementations, one contract (tests/test_engagement_store.py): SQLite (WAL, busy timeout, safe for several
processes: each write is one statement or one BEGIN IMMEDIATE transaction) and DynamoDB (one table, conditional
writes).  Times are int epoch seconds and injectable (`now`) so tests pin the clock.
"""

from __future__ import annotations

import json
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import orjson  # reads the stored JSON bodies ~5x faster than json.loads (the serving API's list routes)
from pydantic import PrivateAttr

from resources.sqlite_wal import close_connection, wal_connection, write_transaction

Record = dict[str, Any]

INBOX_STATES = ("active", "seen", "dismissed")
CALL_OUTCOMES = ("accepted", "declined", "no_answer", "callback")

_INBOX_FIELDS = (
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
_TASK_FIELDS = (
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


def _now(now: float | None) -> int:
    return int(time.time() if now is None else now)


def _require(obj: Record, fields: tuple[str, ...], what: str) -> None:
    """Errors name the field, never a value (customer ids and offers stay out of logs)."""
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


def _due_key(due_at: int, priority: int, task_id: str) -> str:
    """Sort key of the due list: earliest due first, then highest priority, then id (a total order for cursors)."""
    return f"{int(due_at):012d}#{999_999 - max(0, min(int(priority), 999_999)):06d}#{task_id}"


class EngagementStore(dg.ConfigurableResource, ABC):
    """In-app inbox, call tasks, GDPR deletion records and API keys (see the module docstring)."""

    # -- in-app inbox ------------------------------------------------------------------------------------------
    @abstractmethod
    def upsert_inbox_message(self, message: Record) -> bool:
        """Insert a message in state `active`; False (and nothing changed) if its messageId exists already or the
        customer has been deleted."""

    @abstractmethod
    def get_inbox_message(self, message_id: str) -> Record | None: ...

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
    def get_call_task(self, task_id: str) -> Record | None: ...

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

    # -- GDPR --------------------------------------------------------------------------------------------------
    @abstractmethod
    def delete_customer(self, customer_id: str, now: float | None = None) -> dict[str, int]:
        """Record the deletion, then remove the customer's inbox messages and call tasks; returns counts."""

    @abstractmethod
    def is_deleted(self, customer_id: str) -> bool: ...

    @abstractmethod
    def deleted_customers(self) -> set[str]: ...

    def deleted_among(self, customer_ids: Iterable[str]) -> set[str]:
        """Those of `customer_ids` that have been deleted (a page of due touches at a time: one call per page)."""
        return {c for c in customer_ids if self.is_deleted(c)}

    # -- API keys ----------------------------------------------------------------------------------------------
    @abstractmethod
    def create_api_key(self, key: Record) -> bool:
        """Store {keyId, keyHash, scopes, name, ratePerSecond, burst, createdAt}; False if keyId exists."""

    @abstractmethod
    def get_api_key(self, key_id: str) -> Record | None: ...

    @abstractmethod
    def list_api_keys(self) -> list[Record]: ...

    @abstractmethod
    def revoke_api_key(self, key_id: str, now: float | None = None) -> bool: ...


# ------------------------------------------------------------------------------------------------------------------
# SQLite
# ------------------------------------------------------------------------------------------------------------------

_SCHEMA = """
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

_NOT_DELETED = "NOT EXISTS (SELECT 1 FROM deletions WHERE customer_id = ?)"


class SqliteEngagementStore(EngagementStore):
    """The embedded engagement store: one SQLite file in WAL mode, a connection per (process, thread)."""

    path: str
    busy_timeout_ms: int = 30_000

    def _conn(self) -> sqlite3.Connection:
        return wal_connection(self.path, self.busy_timeout_ms, _SCHEMA)

    def close(self) -> None:
        close_connection(self.path, _SCHEMA)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with write_transaction(self._conn()) as conn:
            yield conn

    # -- inbox -------------------------------------------------------------------------------------------------

    def upsert_inbox_message(self, message: Record) -> bool:
        _require(message, _INBOX_FIELDS, "inbox message")
        body = {f: message[f] for f in _INBOX_FIELDS} | {"state": "active", "updatedAt": None}
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
        row = (
            self._conn()
            .execute("SELECT body, state, updated_at FROM inbox WHERE message_id = ?", (message_id,))
            .fetchone()
        )
        return None if row is None else self._inbox_row(row)

    def inbox_messages(self, customer_id: str, now: float | None = None, limit: int = 100) -> list[Record]:
        now_ = _now(now)
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
        if state not in ("seen", "dismissed"):
            raise ValueError("state must be 'seen' or 'dismissed'")
        # 'seen' never overrides 'dismissed'; repeating a transition is a no-op that still returns the message.
        self._conn().execute(
            "UPDATE inbox SET state = ?, updated_at = ? WHERE message_id = ? AND customer_id = ?"
            " AND state <> 'dismissed' AND state <> ?",
            (state, _now(now), message_id, customer_id, state),
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
        _require(task, _TASK_FIELDS, "call task")
        body = {f: task[f] for f in _TASK_FIELDS}
        cur = self._conn().execute(
            "INSERT INTO call_tasks (task_id, customer_id, program_id, due_key, due_at, state, body)"
            f" SELECT ?, ?, ?, ?, ?, 'open', ? WHERE {_NOT_DELETED}"
            " ON CONFLICT (task_id) DO NOTHING",
            (
                task["taskId"],
                task["customerId"],
                task["programId"],
                _due_key(task["dueAt"], task["priority"], task["taskId"]),
                int(task["dueAt"]),
                json.dumps(body),
                task["customerId"],
            ),
        )
        return cur.rowcount == 1

    _TASK_COLS = "body, state, claimed_by, claim_expires_at, outcome, completed_at"

    @staticmethod
    def _task_row(row: tuple) -> Record:
        body, state, claimed_by, claim_expires_at, outcome, completed_at = row
        return orjson.loads(body) | {
            "state": state,
            "claimedBy": claimed_by,
            "claimExpiresAt": claim_expires_at,
            "outcome": outcome,
            "completedAt": completed_at,
        }

    def get_call_task(self, task_id: str) -> Record | None:
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
        now_ = _now(now)
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
            params.append(_decode_task_cursor(cursor, program_id))
        sql += " ORDER BY due_key LIMIT ?"
        params.append(int(limit) + 1)
        rows = self._conn().execute(sql, params).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_task_cursor(program_id, rows[-1][-1]) if more else None
        return [self._task_row(r[:-1]) for r in rows], next_cursor

    def claim_call_task(
        self, task_id: str, agent_id: str, claim_seconds: int, now: float | None = None
    ) -> Record | None:
        now_ = _now(now)
        # One UPDATE: SQLite serialises writers, so the condition and the write are atomic across processes.
        cur = self._conn().execute(
            "UPDATE call_tasks SET state = 'claimed', claimed_by = ?, claim_expires_at = ? WHERE task_id = ?"
            " AND (state = 'open' OR (state = 'claimed' AND (claim_expires_at <= ? OR claimed_by = ?)))",
            (agent_id, now_ + int(claim_seconds), task_id, now_, agent_id),
        )
        return self.get_call_task(task_id) if cur.rowcount == 1 else None

    def complete_call_task(self, task_id: str, agent_id: str, outcome: str, now: float | None = None) -> Record | None:
        if outcome not in CALL_OUTCOMES:
            raise ValueError(f"outcome must be one of {list(CALL_OUTCOMES)}")
        now_ = _now(now)
        cur = self._conn().execute(
            "UPDATE call_tasks SET state = 'completed', outcome = ?, completed_at = ? WHERE task_id = ?"
            " AND state = 'claimed' AND claimed_by = ? AND claim_expires_at > ?",
            (outcome, now_, task_id, agent_id, now_),
        )
        return self.get_call_task(task_id) if cur.rowcount == 1 else None

    # -- GDPR --------------------------------------------------------------------------------------------------

    def delete_customer(self, customer_id: str, now: float | None = None) -> dict[str, int]:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO deletions (customer_id, deleted_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (customer_id, _now(now)),
            )
            inbox = conn.execute("DELETE FROM inbox WHERE customer_id = ?", (customer_id,)).rowcount
            tasks = conn.execute("DELETE FROM call_tasks WHERE customer_id = ?", (customer_id,)).rowcount
        return {"inboxMessages": inbox, "callTasks": tasks}

    def is_deleted(self, customer_id: str) -> bool:
        return (
            self._conn().execute("SELECT 1 FROM deletions WHERE customer_id = ?", (customer_id,)).fetchone() is not None
        )

    def deleted_customers(self) -> set[str]:
        return {r[0] for r in self._conn().execute("SELECT customer_id FROM deletions")}

    def deleted_among(self, customer_ids: Iterable[str]) -> set[str]:
        ids, out = list(dict.fromkeys(customer_ids)), set()
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
        cur = self._conn().execute(
            "INSERT INTO api_keys (key_id, key_hash, body) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (key["keyId"], key["keyHash"], json.dumps(key)),
        )
        return cur.rowcount == 1

    def get_api_key(self, key_id: str) -> Record | None:
        row = self._conn().execute("SELECT body, revoked_at FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        return None if row is None else orjson.loads(row[0]) | {"revokedAt": row[1]}

    def list_api_keys(self) -> list[Record]:
        rows = self._conn().execute("SELECT body, revoked_at FROM api_keys ORDER BY key_id").fetchall()
        return [orjson.loads(b) | {"revokedAt": r} for b, r in rows]

    def revoke_api_key(self, key_id: str, now: float | None = None) -> bool:
        cur = self._conn().execute(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (_now(now), key_id)
        )
        return cur.rowcount == 1


def _encode_task_cursor(program_id: str, due_key: str) -> str:
    from resources.store.base import encode_cursor

    return encode_cursor("call-tasks", program_id, due_key)


def _decode_task_cursor(cursor: str, program_id: str) -> str:
    from resources.store.base import decode_cursor

    pos = decode_cursor(cursor, "call-tasks", program_id)
    if not isinstance(pos, str):
        raise ValueError("invalid cursor for this query")
    return pos


# ------------------------------------------------------------------------------------------------------------------
# DynamoDB
# ------------------------------------------------------------------------------------------------------------------


class DynamoDbEngagementStore(EngagementStore):
    """One DynamoDB table (pk, sk strings) holding every engagement item; two sparse GSIs:

      item            pk                   sk        gsi1pk / gsi1sk                          gsi2pk (customer)
      inbox message   MSG#<messageId>      MSG       INBOX#<customerId> / <displayUntil>#<id>  CUST#<customerId>
      call task       TASK#<taskId>        TASK      CALLS#<programId> / <due key> (removed     CUST#<customerId>
                                                     on completion)
      deletion        DELETED#<customerId> DELETED   DELETIONS / <customerId>
      api key         APIKEY#<keyId>       APIKEY    APIKEYS / <keyId>

    Idempotent inserts and the claim are conditional writes (`attribute_not_exists`, state conditions): two
    agents racing for a task get one success and one ConditionalCheckFailed.  Bodies are stored as JSON strings
    (`body`) next to the attributes used in keys and conditions.
    """

    table_name: str
    region_name: str
    endpoint_url: str | None = None

    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        if self._client is None:
            from botocore.config import Config

            from resources.store.dynamodb import _get_session, _session_lock

            with _session_lock:
                if self._client is None:
                    self._client = _get_session().client(
                        "dynamodb",
                        region_name=self.region_name,
                        endpoint_url=self.endpoint_url,
                        config=Config(retries={"mode": "standard", "max_attempts": 10}),
                    )
        return self._client

    def create_table(self) -> None:
        client = self.client()
        s = {"AttributeType": "S"}
        try:
            client.create_table(
                TableName=self.table_name,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": a, **s} for a in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk")],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "gsi1",
                        "Projection": {"ProjectionType": "ALL"},
                        "KeySchema": [
                            {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                            {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                        ],
                    },
                    {
                        "IndexName": "gsi2",
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                        "KeySchema": [
                            {"AttributeName": "gsi2pk", "KeyType": "HASH"},
                            {"AttributeName": "pk", "KeyType": "RANGE"},
                        ],
                    },
                ],
            )
        except client.exceptions.ResourceInUseException:
            pass
        client.get_waiter("table_exists").wait(TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _put_new(self, item: dict[str, Any]) -> bool:
        client = self.client()
        try:
            client.put_item(TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _update(self, key: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        """A conditional UpdateItem returning the new item, or None when the condition failed."""
        client = self.client()
        try:
            return client.update_item(TableName=self.table_name, Key=key, ReturnValues="ALL_NEW", **kwargs)[
                "Attributes"
            ]
        except client.exceptions.ConditionalCheckFailedException:
            return None

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return (
            self.client()
            .get_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)
            .get("Item")
        )

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            response = self.client().query(TableName=self.table_name, **kwargs)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    @staticmethod
    def _opt(item: dict[str, Any], name: str) -> Any:
        value = item.get(name)
        if value is None or "NULL" in value:
            return None
        return int(value["N"]) if "N" in value else value["S"]

    # -- inbox -------------------------------------------------------------------------------------------------

    def upsert_inbox_message(self, message: Record) -> bool:
        _require(message, _INBOX_FIELDS, "inbox message")
        if self.is_deleted(message["customerId"]):
            return False
        body = {f: message[f] for f in _INBOX_FIELDS}
        return self._put_new(
            {
                "pk": {"S": f"MSG#{message['messageId']}"},
                "sk": {"S": "MSG"},
                "gsi1pk": {"S": f"INBOX#{message['customerId']}"},
                "gsi1sk": {"S": f"{int(message['displayUntil']):012d}#{message['messageId']}"},
                "gsi2pk": {"S": f"CUST#{message['customerId']}"},
                "customerId": {"S": message["customerId"]},
                "displayFrom": {"N": str(int(message["displayFrom"]))},
                "state": {"S": "active"},
                "body": {"S": json.dumps(body)},
            }
        )

    def _inbox_item(self, item: dict[str, Any]) -> Record:
        return orjson.loads(item["body"]["S"]) | {
            "state": item["state"]["S"],
            "updatedAt": self._opt(item, "updatedAt"),
        }

    def get_inbox_message(self, message_id: str) -> Record | None:
        item = self._get(f"MSG#{message_id}", "MSG")
        return None if item is None else self._inbox_item(item)

    def inbox_messages(self, customer_id: str, now: float | None = None, limit: int = 100) -> list[Record]:
        now_ = _now(now)
        out = []
        for item in self._query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :c AND gsi1sk > :now",
            FilterExpression="displayFrom <= :n AND #s <> :d",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":c": {"S": f"INBOX#{customer_id}"},
                ":now": {"S": f"{now_:012d}#~"},
                ":n": {"N": str(now_)},
                ":d": {"S": "dismissed"},
            },
        ):
            out.append(self._inbox_item(item))
            if len(out) >= limit:
                break
        return out

    def set_inbox_state(self, customer_id: str, message_id: str, state: str, now: float | None = None) -> Record | None:
        if state not in ("seen", "dismissed"):
            raise ValueError("state must be 'seen' or 'dismissed'")
        self._update(
            {"pk": {"S": f"MSG#{message_id}"}, "sk": {"S": "MSG"}},
            UpdateExpression="SET #s = :s, updatedAt = :t",
            ConditionExpression="customerId = :c AND #s <> :d AND #s <> :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":s": {"S": state},
                ":t": {"N": str(_now(now))},
                ":c": {"S": customer_id},
                ":d": {"S": "dismissed"},
            },
        )
        item = self._get(f"MSG#{message_id}", "MSG")
        if item is None or item["customerId"]["S"] != customer_id:
            return None
        return self._inbox_item(item)

    # -- call tasks --------------------------------------------------------------------------------------------

    def create_call_task(self, task: Record) -> bool:
        _require(task, _TASK_FIELDS, "call task")
        if self.is_deleted(task["customerId"]):
            return False
        body = {f: task[f] for f in _TASK_FIELDS}
        return self._put_new(
            {
                "pk": {"S": f"TASK#{task['taskId']}"},
                "sk": {"S": "TASK"},
                "gsi1pk": {"S": f"CALLS#{task['programId']}"},
                "gsi1sk": {"S": _due_key(task["dueAt"], task["priority"], task["taskId"])},
                "gsi2pk": {"S": f"CUST#{task['customerId']}"},
                "dueAt": {"N": str(int(task["dueAt"]))},
                "state": {"S": "open"},
                "body": {"S": json.dumps(body)},
            }
        )

    def _task_item(self, item: dict[str, Any]) -> Record:
        return orjson.loads(item["body"]["S"]) | {
            "state": item["state"]["S"],
            "claimedBy": self._opt(item, "claimedBy"),
            "claimExpiresAt": self._opt(item, "claimExpiresAt"),
            "outcome": self._opt(item, "outcome"),
            "completedAt": self._opt(item, "completedAt"),
        }

    def get_call_task(self, task_id: str) -> Record | None:
        item = self._get(f"TASK#{task_id}", "TASK")
        return None if item is None else self._task_item(item)

    def due_call_tasks(
        self,
        program_id: str,
        due_before: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> tuple[list[Record], str | None]:
        now_ = _now(now)
        condition = "gsi1pk = :p"
        values: dict[str, Any] = {":p": {"S": f"CALLS#{program_id}"}, ":open": {"S": "open"}, ":now": {"N": str(now_)}}
        if cursor is not None:
            condition += " AND gsi1sk > :after"
            values[":after"] = {"S": _decode_task_cursor(cursor, program_id)}
        if due_before is not None:
            condition += " AND gsi1sk <= :before" if cursor is None else ""
            values[":before"] = {"S": f"{int(due_before):012d}#~"}
        filt = "(#s = :open OR claimExpiresAt <= :now)"
        if due_before is not None and cursor is not None:  # a key condition takes one range operator only
            filt += " AND gsi1sk <= :before"
        out: list[dict[str, Any]] = []
        for item in self._query(
            IndexName="gsi1",
            KeyConditionExpression=condition,
            FilterExpression=filt,
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=values,
        ):
            if len(out) == limit:
                return [self._task_item(i) for i in out], _encode_task_cursor(program_id, out[-1]["gsi1sk"]["S"])
            out.append(item)
        return [self._task_item(i) for i in out], None

    def claim_call_task(
        self, task_id: str, agent_id: str, claim_seconds: int, now: float | None = None
    ) -> Record | None:
        now_ = _now(now)
        item = self._update(
            {"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "TASK"}},
            UpdateExpression="SET #s = :claimed, claimedBy = :a, claimExpiresAt = :exp",
            ConditionExpression=(
                "attribute_exists(pk) AND (#s = :open OR (#s = :claimed AND (claimExpiresAt <= :now OR claimedBy = :a)))"
            ),
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":claimed": {"S": "claimed"},
                ":open": {"S": "open"},
                ":a": {"S": agent_id},
                ":exp": {"N": str(now_ + int(claim_seconds))},
                ":now": {"N": str(now_)},
            },
        )
        return None if item is None else self._task_item(item)

    def complete_call_task(self, task_id: str, agent_id: str, outcome: str, now: float | None = None) -> Record | None:
        if outcome not in CALL_OUTCOMES:
            raise ValueError(f"outcome must be one of {list(CALL_OUTCOMES)}")
        now_ = _now(now)
        item = self._update(
            {"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "TASK"}},
            UpdateExpression="SET #s = :done, outcome = :o, completedAt = :now REMOVE gsi1pk, gsi1sk",
            ConditionExpression="#s = :claimed AND claimedBy = :a AND claimExpiresAt > :now",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":done": {"S": "completed"},
                ":o": {"S": outcome},
                ":now": {"N": str(now_)},
                ":claimed": {"S": "claimed"},
                ":a": {"S": agent_id},
            },
        )
        return None if item is None else self._task_item(item)

    # -- GDPR --------------------------------------------------------------------------------------------------

    def delete_customer(self, customer_id: str, now: float | None = None) -> dict[str, int]:
        # The record first: a crash half-way still leaves the customer excluded, and a re-run finishes the job.
        self.client().put_item(
            TableName=self.table_name,
            Item={
                "pk": {"S": f"DELETED#{customer_id}"},
                "sk": {"S": "DELETED"},
                "gsi1pk": {"S": "DELETIONS"},
                "gsi1sk": {"S": customer_id},
                "deletedAt": {"N": str(_now(now))},
            },
        )
        counts = {"inboxMessages": 0, "callTasks": 0}
        for item in self._query(
            IndexName="gsi2",
            KeyConditionExpression="gsi2pk = :c",
            ExpressionAttributeValues={":c": {"S": f"CUST#{customer_id}"}},
        ):
            self.client().delete_item(TableName=self.table_name, Key={"pk": item["pk"], "sk": item["sk"]})
            counts["inboxMessages" if item["sk"]["S"] == "MSG" else "callTasks"] += 1
        return counts

    def is_deleted(self, customer_id: str) -> bool:
        return self._get(f"DELETED#{customer_id}", "DELETED") is not None

    def deleted_among(self, customer_ids: Iterable[str]) -> set[str]:
        """BatchGetItem, 100 keys a call; unprocessed keys (throttling) are asked again."""
        ids, out, client = list(dict.fromkeys(customer_ids)), set(), self.client()
        for i in range(0, len(ids), 100):
            keys = [{"pk": {"S": f"DELETED#{c}"}, "sk": {"S": "DELETED"}} for c in ids[i : i + 100]]
            request: dict[str, Any] = {self.table_name: {"Keys": keys, "ProjectionExpression": "gsi1sk"}}
            while request:
                resp = client.batch_get_item(RequestItems=request)
                out.update(item["gsi1sk"]["S"] for item in resp["Responses"].get(self.table_name, []))
                request = resp.get("UnprocessedKeys") or {}
        return out

    def deleted_customers(self) -> set[str]:
        return {
            item["gsi1sk"]["S"]
            for item in self._query(
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :d",
                ExpressionAttributeValues={":d": {"S": "DELETIONS"}},
            )
        }

    # -- API keys ----------------------------------------------------------------------------------------------

    def create_api_key(self, key: Record) -> bool:
        return self._put_new(
            {
                "pk": {"S": f"APIKEY#{key['keyId']}"},
                "sk": {"S": "APIKEY"},
                "gsi1pk": {"S": "APIKEYS"},
                "gsi1sk": {"S": key["keyId"]},
                "body": {"S": json.dumps(key)},
            }
        )

    def _key_item(self, item: dict[str, Any]) -> Record:
        return orjson.loads(item["body"]["S"]) | {"revokedAt": self._opt(item, "revokedAt")}

    def get_api_key(self, key_id: str) -> Record | None:
        item = self._get(f"APIKEY#{key_id}", "APIKEY")
        return None if item is None else self._key_item(item)

    def list_api_keys(self) -> list[Record]:
        return [
            self._key_item(item)
            for item in self._query(
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :k",
                ExpressionAttributeValues={":k": {"S": "APIKEYS"}},
            )
        ]

    def revoke_api_key(self, key_id: str, now: float | None = None) -> bool:
        return (
            self._update(
                {"pk": {"S": f"APIKEY#{key_id}"}, "sk": {"S": "APIKEY"}},
                UpdateExpression="SET revokedAt = :t",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(revokedAt)",
                ExpressionAttributeValues={":t": {"N": str(_now(now))}},
            )
            is not None
        )
