"""Outcomes in one DynamoDB table: production (ENGAGE_ENV=prod).

Items (`pk`, `sk` Strings):

  outcome   pk = M#<providerId>   sk = E#<eventId>   the stored record (`base.outcome_item`; absent attributes for
                                                     NULLs), `custPk` = customerId when it is joined to a touch,
                                                     `dayPk` = the UTC day of occurredAt (`YYYY-MM-DD`)
  opt-out   pk = O#<customerId>   sk = O             channels (String Set), custPk = customerId

Recording is a PutItem under `attribute_not_exists(pk)`: a retried report of the same message (same provider id,
same event id) finds its item and writes nothing.  `for_provider_id` is one Query of the message's partition;
`opted_out` one BatchGetItem per 100 customers; GDPR erasure finds a customer's items through the sparse KEYS_ONLY
index `cust` (custPk); the daily export (`between`) queries the index `day` (dayPk, occurredAt; all attributes), one
Query per day; `create_table` gives outcomes recorded before that index existed their `dayPk`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from engage_assets.domain.outcomes import Outcome
from resources.dynamodb import (
    DynamoDbTableResource,
    RetryPolicy,
    batch_get,
    conditional_write,
    create_table,
    gsi,
    plain_item,
    query_items,
    scan_items,
    serialize,
    to_dynamo,
    write_all,
)
from resources.outcomes.base import OutcomeStore, TouchRef, outcome_item

CUST, DAY = "cust", "day"


def _day(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


def _opt_out_key(customer_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"O#{customer_id}"}, "sk": {"S": "O"}}


class DynamoDbOutcomeStore(DynamoDbTableResource, OutcomeStore):
    """Outcomes and opt-outs in one DynamoDB table (module docstring)."""

    def create_table(self) -> None:
        """Create the table with its `cust` and `day` indexes (pay per request; idempotent: an existing table gets
        the indexes it lacks)."""
        create_table(
            self.client(),
            self.table_name,
            key_schema=[("pk", "HASH"), ("sk", "RANGE")],
            attributes={"pk": "S", "sk": "S", "custPk": "S", "dayPk": "S", "occurredAt": "N"},
            indexes=[
                gsi(CUST, "custPk", None, {"ProjectionType": "KEYS_ONLY"}),
                gsi(DAY, "dayPk", "occurredAt", {"ProjectionType": "ALL"}),
            ],
        )
        self._backfill_days()

    def _backfill_days(self) -> int:
        """Give the outcomes recorded before the `day` index existed their `dayPk` (so the daily export finds them);
        how many.  Idempotent: a scan for outcome items without it, each set only if still absent."""
        done = 0
        for raw in scan_items(
            self.client(),
            TableName=self.table_name,
            FilterExpression="begins_with(pk, :m) AND attribute_not_exists(dayPk)",
            ExpressionAttributeValues={":m": {"S": "M#"}},
            ProjectionExpression="pk, sk, occurredAt",
        ):
            done += (
                conditional_write(
                    self.client().update_item,
                    TableName=self.table_name,
                    Key={"pk": raw["pk"], "sk": raw["sk"]},
                    UpdateExpression="SET dayPk = :d",
                    ConditionExpression="attribute_not_exists(dayPk)",
                    ExpressionAttributeValues={":d": {"S": _day(int(raw["occurredAt"]["N"]))}},
                )
                is not None
            )
        return done

    def record(self, outcome: Outcome, touch: TouchRef | None, now: int, unmatched: str | None = None) -> bool:
        """Keep the outcome once (a conditional put on its provider id and event id)."""
        item = {
            k: serialize(to_dynamo(v)) for k, v in outcome_item(outcome, touch, unmatched, now).items() if v is not None
        }
        item["pk"] = {"S": f"M#{outcome.provider_id}"}
        item["sk"] = {"S": f"E#{outcome.event_id}"}
        item["dayPk"] = {"S": _day(outcome.occurred_at)}
        if touch is not None:
            item["custPk"] = {"S": touch.customer_id}
        put = conditional_write(
            self.client().put_item, TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(pk)"
        )
        return put is not None

    def for_provider_id(self, provider_id: str) -> list[dict[str, Any]]:
        """The provider message's outcomes, oldest first."""
        items = query_items(
            self.client(),
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"M#{provider_id}"}},
            ConsistentRead=True,
        )
        return _records(items)

    def between(self, start: int, end: int) -> list[dict[str, Any]]:
        """The outcomes that occurred in [start, end): one Query of the `day` index per UTC day."""
        items: list[dict[str, Any]] = []
        day = datetime.fromtimestamp(start, UTC).date()
        while end > start and day.isoformat() <= _day(end - 1):
            items += query_items(
                self.client(),
                TableName=self.table_name,
                IndexName=DAY,
                KeyConditionExpression="dayPk = :d AND occurredAt BETWEEN :s AND :e",
                ExpressionAttributeValues={
                    ":d": {"S": day.isoformat()},
                    ":s": {"N": str(start)},
                    ":e": {"N": str(end - 1)},
                },
            )
            day += timedelta(days=1)
        return _records(items)

    def add_opt_out(self, customer_id: str, channel: str, now: int) -> None:
        """Add the channel to the customer's opt-out item."""
        self.client().update_item(
            TableName=self.table_name,
            Key=_opt_out_key(customer_id),
            UpdateExpression="ADD channels :c SET custPk = :cust, createdAt = if_not_exists(createdAt, :now)",
            ExpressionAttributeValues={":c": {"SS": [channel]}, ":cust": {"S": customer_id}, ":now": {"N": str(now)}},
        )

    def opted_out(self, customer_ids: Iterable[str]) -> dict[str, set[str]]:
        """{customer: channels} of these customers' opt-outs (consistent reads)."""
        keys = [_opt_out_key(c) for c in dict.fromkeys(customer_ids)]
        items = batch_get(self.client(), self.table_name, keys, consistent=True, policy=RetryPolicy(max_attempts=8))
        return {raw["pk"]["S"][2:]: set(raw.get("channels", {}).get("SS", [])) for raw in items}

    def erase_customers(self, customer_ids: Iterable[str]) -> int:
        """Delete every item the `cust` index holds for these customers."""
        keys = []
        for customer in dict.fromkeys(customer_ids):
            for raw in query_items(
                self.client(),
                TableName=self.table_name,
                IndexName=CUST,
                KeyConditionExpression="custPk = :c",
                ExpressionAttributeValues={":c": {"S": customer}},
            ):
                keys.append({"pk": raw["pk"], "sk": raw["sk"]})
        unique = list({(k["pk"]["S"], k["sk"]["S"]): k for k in keys}.values())
        write_all(self.client(), self.table_name, [{"DeleteRequest": {"Key": k}} for k in unique])
        return len(unique)


def _records(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored records (`outcome_item`'s keys) of raw items, by occurrence then event id."""
    out = []
    for raw in items:
        item = plain_item(raw)
        for name in ("pk", "sk", "custPk", "dayPk"):
            item.pop(name, None)
        for name in ("detail", "touchRef", "programId", "customerId", "unmatched"):
            item.setdefault(name, None)
        out.append(item)
    return sorted(out, key=lambda r: (r["occurredAt"], r["eventId"]))
