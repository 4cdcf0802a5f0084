"""DynamoDB de-duplication store: production (ENGAGE_ENV=prod), one item per key, every claim a conditional put.

Table (`table_name`, pay per request): `pk` (String HASH) = `dedup#<key>`; `state` (pending | done), `claimed_at`
and `expires_at` (Numbers, epoch seconds; `expires_at` is the table's TTL attribute).  A claim is a PutItem under
`attribute_not_exists(pk) OR expires_at <= :now OR (state = pending AND claimed_at <= :now - lease)`: the
conditional put of `resources.dynamodb.put_if_absent`, extended so an expired key (which DynamoDB's TTL deletes
lazily) or a dead consumer's stale claim is taken over.  Exactly one of several concurrent claimers' puts holds.
The cart state (`resources.cart_state.dynamodb`) may share the table: its keys have other prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resources.dedup.base import DONE, PENDING, DedupStore
from resources.dynamodb import (
    DynamoDbTableResource,
    RetryPolicy,
    batch_get,
    conditional_write,
    create_table,
    deserialize,
    from_dynamo,
    number,
    parallel_map,
)

CLAIMABLE = "attribute_not_exists(pk) OR expires_at <= :now OR (#s = :pending AND claimed_at <= :stale)"


def _key(key: str) -> dict[str, Any]:
    """The item key of a dedup key."""
    return {"pk": {"S": f"dedup#{key}"}}


class DynamoDbDedupStore(DynamoDbTableResource, DedupStore):
    """Claims in one DynamoDB table (module docstring)."""

    concurrency: int = 8

    def create_table(self) -> None:
        """Create the table with `expires_at` as its TTL attribute (idempotent)."""
        create_table(
            self.client(),
            self.table_name,
            key_schema=[("pk", "HASH")],
            attributes={"pk": "S"},
            ttl_attribute="expires_at",
        )

    def _claim_one(self, key: str, ttl_s: int, now: float) -> bool:
        item = {
            **_key(key),
            "state": {"S": PENDING},
            "claimed_at": {"N": number(float(now))},
            "expires_at": {"N": number(float(now + ttl_s))},
        }
        values = {":now": {"N": number(float(now))}, ":pending": {"S": PENDING}}
        values[":stale"] = {"N": number(float(now - self.lease_s))}
        response = conditional_write(
            self.client().put_item,
            TableName=self.table_name,
            Item=item,
            ConditionExpression=CLAIMABLE,
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=values,
        )
        return response is not None

    def claim(self, keys: Sequence[str], ttl_s: int, now: float) -> set[str]:
        """Claim the keys nobody holds, one conditional put each (`concurrency` at a time)."""
        unique = list(dict.fromkeys(keys))
        won = parallel_map(lambda k: self._claim_one(k, ttl_s, now), unique, self.concurrency)
        return {k for k, ok in zip(unique, won, strict=True) if ok}

    def _if_pending(self, method: Any, key: str, **request: Any) -> None:
        conditional_write(
            method,
            TableName=self.table_name,
            Key=_key(key),
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#s": "state"},
            **request,
        )

    def complete(self, keys: Sequence[str], now: float) -> None:
        """Mark pending claims done."""
        values = {":pending": {"S": PENDING}, ":done": {"S": DONE}}
        for key in dict.fromkeys(keys):
            self._if_pending(
                self.client().update_item, key, UpdateExpression="SET #s = :done", ExpressionAttributeValues=values
            )

    def release(self, keys: Sequence[str]) -> None:
        """Drop pending claims."""
        for key in dict.fromkeys(keys):
            self._if_pending(self.client().delete_item, key, ExpressionAttributeValues={":pending": {"S": PENDING}})

    def in_flight(self, keys: Sequence[str], now: float) -> set[str]:
        """Keys held pending by another consumer within the lease (a strongly consistent read)."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return set()
        items = batch_get(
            self.client(), self.table_name, [_key(k) for k in unique], consistent=True, policy=RetryPolicy()
        )
        out = set()
        for raw in items:
            item = {k: from_dynamo(deserialize(v)) for k, v in raw.items()}
            held = item["state"] == PENDING and item["expires_at"] > now and item["claimed_at"] > now - self.lease_s
            if held:
                out.add(item["pk"].removeprefix("dedup#"))
        return out
