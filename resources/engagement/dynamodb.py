"""The production engagement store: one DynamoDB table (the contract is `resources.engagement.base`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import orjson  # reads the stored JSON bodies ~5x faster than json.loads (the serving API's list routes)

from resources.dynamodb import (
    DynamoDbTableResource,
    batch_get,
    conditional_write,
    create_table,
    gsi,
    put_if_absent,
    query_items,
)
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
from resources.engagement.dynamodb_assignment import DynamoDbCallAssignment


class DynamoDbEngagementStore(DynamoDbCallAssignment, DynamoDbTableResource, EngagementStore):
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

    region_name: str  # required here: the engagement table is never region-less

    def create_table(self) -> None:
        """Create the table and its two GSIs (pay per request); an existing table is left as is."""
        create_table(
            self.client(),
            self.table_name,
            key_schema=[("pk", "HASH"), ("sk", "RANGE")],
            attributes={a: "S" for a in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk")},
            indexes=[
                gsi("gsi1", "gsi1pk", "gsi1sk", {"ProjectionType": "ALL"}),
                gsi("gsi2", "gsi2pk", "pk", {"ProjectionType": "KEYS_ONLY"}),
            ],
        )

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _put_new(self, item: dict[str, Any]) -> bool:
        return put_if_absent(self.client(), self.table_name, item)

    def _update(self, key: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        """A conditional UpdateItem returning the new item, or None when the condition failed."""
        response = conditional_write(
            self.client().update_item, TableName=self.table_name, Key=key, ReturnValues="ALL_NEW", **kwargs
        )
        return None if response is None else response["Attributes"]

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return (
            self.client()
            .get_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)
            .get("Item")
        )

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return query_items(self.client(), TableName=self.table_name, **kwargs)

    @staticmethod
    def _opt(item: dict[str, Any], name: str) -> Any:
        value = item.get(name)
        if value is None or "NULL" in value:
            return None
        return int(value["N"]) if "N" in value else value["S"]

    # -- inbox -------------------------------------------------------------------------------------------------

    def upsert_inbox_message(self, message: Record) -> bool:
        """See `EngagementStore.upsert_inbox_message`: a new message, unless it exists or its customer was deleted."""
        require_fields(message, INBOX_FIELDS, "inbox message")
        if self.is_deleted(message["customerId"]):
            return False
        body = {f: message[f] for f in INBOX_FIELDS}
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
        """One inbox message, or None."""
        item = self._get(f"MSG#{message_id}", "MSG")
        return None if item is None else self._inbox_item(item)

    def inbox_messages(self, customer_id: str, now: float | None = None, limit: int = 100) -> list[Record]:
        """The customer's live, undismissed messages, soonest to end first."""
        now_ = now_epoch(now)
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
        """See `EngagementStore.set_inbox_state`: seen or dismissed (dismissed is final)."""
        if state not in ("seen", "dismissed"):
            raise ValueError("state must be 'seen' or 'dismissed'")
        self._update(
            {"pk": {"S": f"MSG#{message_id}"}, "sk": {"S": "MSG"}},
            UpdateExpression="SET #s = :s, updatedAt = :t",
            ConditionExpression="customerId = :c AND #s <> :d AND #s <> :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":s": {"S": state},
                ":t": {"N": str(now_epoch(now))},
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
        """See `EngagementStore.create_call_task`: a new open task, unless it exists or its customer was deleted."""
        require_fields(task, TASK_FIELDS, "call task")
        if self.is_deleted(task["customerId"]):
            return False
        body = {f: task[f] for f in TASK_FIELDS}
        return self._put_new(
            {
                "pk": {"S": f"TASK#{task['taskId']}"},
                "sk": {"S": "TASK"},
                "gsi1pk": {"S": f"CALLS#{task['programId']}"},
                "gsi1sk": {"S": due_key(task["dueAt"], task["priority"], task["taskId"])},
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
            "assignedTo": self._opt(item, "assignedTo"),
            "assignedAt": self._opt(item, "assignedAt"),
        }

    def get_call_task(self, task_id: str) -> Record | None:
        """One call task, or None."""
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
        """See `EngagementStore.due_call_tasks`: claimable tasks, earliest due first, keyset-paged."""
        now_ = now_epoch(now)
        condition = "gsi1pk = :p"
        values: dict[str, Any] = {":p": {"S": f"CALLS#{program_id}"}, ":open": {"S": "open"}, ":now": {"N": str(now_)}}
        if cursor is not None:
            condition += " AND gsi1sk > :after"
            values[":after"] = {"S": decode_task_cursor(cursor, program_id)}
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
                return [self._task_item(i) for i in out], encode_task_cursor(program_id, out[-1]["gsi1sk"]["S"])
            out.append(item)
        return [self._task_item(i) for i in out], None

    def claim_call_task(
        self, task_id: str, agent_id: str, claim_seconds: int, now: float | None = None
    ) -> Record | None:
        """See `EngagementStore.claim_call_task`: one conditional write, so two agents never hold a task."""
        now_ = now_epoch(now)
        item = self._update(
            {"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "TASK"}},
            UpdateExpression="SET #s = :claimed, claimedBy = :a, claimExpiresAt = :exp",
            ConditionExpression=(
                "attribute_exists(pk) AND (#s = :open OR (#s = :claimed AND (claimExpiresAt <= :now OR claimedBy = :a)))"
                " AND (attribute_not_exists(assignedTo) OR assignedTo = :a)"
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
        """See `EngagementStore.complete_call_task`: only under the agent's live claim."""
        if outcome not in CALL_OUTCOMES:
            raise ValueError(f"outcome must be one of {list(CALL_OUTCOMES)}")
        now_ = now_epoch(now)
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
        """See `EngagementStore.delete_customer`: the deletion record first, then the customer's items."""
        self.client().put_item(
            TableName=self.table_name,
            Item={
                "pk": {"S": f"DELETED#{customer_id}"},
                "sk": {"S": "DELETED"},
                "gsi1pk": {"S": "DELETIONS"},
                "gsi1sk": {"S": customer_id},
                "deletedAt": {"N": str(now_epoch(now))},
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
        """Whether the customer's deletion was recorded."""
        return self._get(f"DELETED#{customer_id}", "DELETED") is not None

    def deleted_among(self, customer_ids: Iterable[str]) -> set[str]:
        """BatchGetItem, 100 keys a call; unprocessed keys (throttling) are asked again, with backoff."""
        keys = [{"pk": {"S": f"DELETED#{c}"}, "sk": {"S": "DELETED"}} for c in dict.fromkeys(customer_ids)]
        return {item["gsi1sk"]["S"] for item in batch_get(self.client(), self.table_name, keys, projection="gsi1sk")}

    def deleted_customers(self) -> set[str]:
        """Every deleted customer."""
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
        """Store a key record (only the secret's hash); False if its keyId exists."""
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
        """One API key record, or None."""
        item = self._get(f"APIKEY#{key_id}", "APIKEY")
        return None if item is None else self._key_item(item)

    def list_api_keys(self) -> list[Record]:
        """Every API key record (hash, scopes, limits, revokedAt)."""
        return [
            self._key_item(item)
            for item in self._query(
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :k",
                ExpressionAttributeValues={":k": {"S": "APIKEYS"}},
            )
        ]

    def revoke_api_key(self, key_id: str, now: float | None = None) -> bool:
        """Revoke a key once; False if unknown or already revoked."""
        return (
            self._update(
                {"pk": {"S": f"APIKEY#{key_id}"}, "sk": {"S": "APIKEY"}},
                UpdateExpression="SET revokedAt = :t",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(revokedAt)",
                ExpressionAttributeValues={":t": {"N": str(now_epoch(now))}},
            )
            is not None
        )
