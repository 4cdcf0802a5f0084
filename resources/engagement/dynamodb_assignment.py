"""The DynamoDB engagement store's call-task assignment (`EngagementStore.assign_call_task` and the lists it needs).

A task item carries `assignedTo` / `assignedAt` once assigned; the program's not-completed tasks are the sparse GSI1
partition `CALLS#<programId>` (due key order; completion removes the keys), read with a filter on the assignee.
The assignment itself is one conditional UpdateItem (`attribute_not_exists(assignedTo)`), so a task is never
assigned twice, whatever runs at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from resources.engagement.base import Record, decode_task_cursor, encode_task_cursor, now_epoch


class DynamoDbCallAssignment:
    """Mixed into `DynamoDbEngagementStore` (which provides `_query`, `_update` and `_task_item`)."""

    if TYPE_CHECKING:  # the store's methods, declared for the type checker only: at run time the store's are found

        def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]: ...

        def _update(self, key: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None: ...

        def _task_item(self, item: dict[str, Any]) -> Record: ...

    def _calls(self, program_id: str, filt: str, values: dict[str, Any], after: str | None = None) -> Iterator[Any]:
        condition = "gsi1pk = :p" + (" AND gsi1sk > :after" if after is not None else "")
        values = {":p": {"S": f"CALLS#{program_id}"}} | values
        if after is not None:
            values[":after"] = {"S": after}
        return self._query(
            IndexName="gsi1",
            KeyConditionExpression=condition,
            FilterExpression=filt,
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=values,
        )

    def unassigned_call_tasks(self, program_id: str, limit: int = 1000) -> list[Record]:
        """See `EngagementStore.unassigned_call_tasks`."""
        out = []
        for item in self._calls(
            program_id, "#s = :open AND attribute_not_exists(assignedTo)", {":open": {"S": "open"}}
        ):
            out.append(self._task_item(item))
            if len(out) == limit:
                break
        return out

    def assigned_open_counts(self, program_id: str) -> dict[str, int]:
        """See `EngagementStore.assigned_open_counts` (GSI1 holds only the tasks not completed)."""
        counts: dict[str, int] = {}
        for item in self._calls(
            program_id, "attribute_exists(assignedTo) AND #s <> :done", {":done": {"S": "completed"}}
        ):
            agent = item["assignedTo"]["S"]
            counts[agent] = counts.get(agent, 0) + 1
        return counts

    def assign_call_task(self, task_id: str, agent_id: str, now: float | None = None) -> bool:
        """See `EngagementStore.assign_call_task`: one conditional UpdateItem."""
        item = self._update(
            {"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "TASK"}},
            UpdateExpression="SET assignedTo = :a, assignedAt = :now",
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(assignedTo) AND #s <> :done",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":a": {"S": agent_id},
                ":now": {"N": str(now_epoch(now))},
                ":done": {"S": "completed"},
            },
        )
        return item is not None

    def assigned_call_tasks(
        self, program_id: str, agent_id: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Record], str | None]:
        """See `EngagementStore.assigned_call_tasks`: keyset-paged on the due key."""
        after = decode_task_cursor(cursor, program_id) if cursor is not None else None
        out: list[dict[str, Any]] = []
        filt = "assignedTo = :a AND #s <> :done"
        for item in self._calls(program_id, filt, {":a": {"S": agent_id}, ":done": {"S": "completed"}}, after):
            if len(out) == limit:
                return [self._task_item(i) for i in out], encode_task_cursor(program_id, out[-1]["gsi1sk"]["S"])
            out.append(item)
        return [self._task_item(i) for i in out], None
