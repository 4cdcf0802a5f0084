"""DynamoDB candidate store: production (ENGAGE_ENV=prod), boto3 low-level client.

Physical layout of the candidates table (`table_name`), every key a String unless said otherwise:

  pk      HASH   customerId            } together the spec's "customerId#programId" primary key: one item per
  sk      RANGE  programId             } customer and program; split in two so that a customer's candidates in
                                         every program are one Query (serving API, erasure) without a fourth GSI.
  GSI1    gsi1pk = programId#segment,   gsi1sk = score (Number: sorts numerically, negatives included, no
          padding scheme to get wrong)                                   projection ALL (served as is)
  GSI2    gsi2pk = programId#offerType, gsi2sk = partitionKey#customerId projection ALL (served as is)
  GSI4    gsi2pk = programId#offerType, gsi4sk = score (Number)        projection ALL (GetCandidatesByScore)
  GSI5    gsi5pk = programId#churnReason, gsi5sk = partitionKey#score#customerId (the score as 16 sortable hex
          digits): the win-back spec's "Program:ChurnReason:Date"            projection ALL
  GSI3    gsi3pk = programId,           gsi3sk = partitionKey#customerId projection INCLUDE expiresAt
          (the program's items by partition: finds a partition's stale items to delete, and counts)
  expiresAt (Number, epoch seconds) is the table's TTL attribute.

The record's own fields are stored as top-level attributes (floats as Decimal, read back as float), next to the
key attributes above, which are stripped on read.  An item without a segment/score (offerType) is simply absent
from GSI1 (GSI2): sparse indexes, as in SQLite.

Score cache table (`score_cache_table_name`): pk = namespace#key (HASH only, spreads writes), score (Number),
expiresAt (Number, TTL).

Writes: BatchWriteItem in batches of exactly 25 requests, UnprocessedItems retried with capped exponential backoff
and full jitter (`resources.dynamodb.write_all`), at most `max_attempts` calls per batch, then
CandidateStoreWriteError.  BatchWriteItem takes no condition, so "never overwrite a newer partition's candidate" is
a read (BatchGetItem, 100 keys a call) before the write.  Known window: a concurrent writer of a newer partition
between that read and the write (or between the GSI3 read and a stale-item delete) can be overwritten; runs of one
program are serialised by Dagster, and re-running the newer partition repairs it.  The items themselves (keys,
numbers, cursors) are built in `resources.store.dynamodb_items`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import dagster as dg

from resources.dynamodb import (
    DynamoDbTableResource,
    RetryPolicy,
    UnprocessedError,
    batch_get,
    create_table,
    number,
    query_count,
    query_items,
    write_all,
)
from resources.store.base import (
    CandidateStore,
    CandidateStoreWriteError,
    Page,
    PartitionWrite,
    Record,
    WriteResult,
    resolve_now,
)
from resources.store.dynamodb_items import (
    CANDIDATE_ATTRIBUTES,
    CANDIDATE_INDEXES,
    GSI1,
    GSI2,
    GSI3,
    GSI4,
    GSI5,
    INDEX_KEYS,
    SCORE_PROJECTION,
    churn_query,
    decode_key,
    encode_key,
    from_item,
    live_scores,
    score_item,
)
from resources.store.dynamodb_write import DynamoDbPartitionWrite

_log = dg.get_dagster_logger("engage.store")


class DynamoDbCandidateStore(DynamoDbTableResource, CandidateStore):
    """Candidate store on two DynamoDB tables (see the module docstring for the key layout)."""

    score_cache_table_name: str
    region_name: str  # required here, unlike the shared base
    max_attempts: int = 8  # BatchWriteItem/BatchGetItem calls per batch before giving up on unprocessed items
    backoff_base_s: float = 0.05
    backoff_max_s: float = 5.0
    write_concurrency: int = 4  # batches in flight at once (boto3 clients are thread-safe)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def create_tables(self) -> None:
        """Create both tables (pay per request) and enable their TTL; a table that already exists is left as is, but
        for the indexes it lacks (GSI5 on a table created before it), which are added."""
        client, keys = self.client(), [("pk", "HASH"), ("sk", "RANGE")]
        create_table(
            client,
            self.table_name,
            key_schema=keys,
            attributes=CANDIDATE_ATTRIBUTES,
            indexes=CANDIDATE_INDEXES,
            ttl_attribute="expiresAt",
        )
        create_table(
            client, self.score_cache_table_name, key_schema=keys[:1], attributes={"pk": "S"}, ttl_attribute="expiresAt"
        )

    def _policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts, base_s=self.backoff_base_s, max_s=self.backoff_max_s)

    def _write_all(self, table: str, requests: list[dict]) -> tuple[int, int]:
        """All requests in batches of exactly 25 (the last one smaller); returns (batches, retries)."""
        try:
            return write_all(self.client(), table, requests, self._policy(), self.write_concurrency)
        except UnprocessedError as err:
            raise CandidateStoreWriteError(str(err)) from err

    def _batch_get(self, table: str, keys: list[dict], projection: str, names: dict[str, str]) -> list[dict]:
        """BatchGetItem for any number of keys (100 a call), UnprocessedKeys retried like unprocessed writes."""
        try:
            policy, concurrency = self._policy(), self.write_concurrency
            return batch_get(
                self.client(), table, keys, projection=projection, names=names, policy=policy, concurrency=concurrency
            )
        except UnprocessedError as err:
            raise CandidateStoreWriteError(str(err)) from err

    def _query(self, **kwargs: Any) -> Iterator[dict]:
        """Every raw item of a Query, page after page."""
        return query_items(self.client(), **kwargs)

    # -- writes ------------------------------------------------------------------------------------------------

    def replace_partition(
        self, program_id: str, partition_key: str, records: Sequence[Record], now: float | None = None
    ) -> WriteResult:
        """Read existing items' partitions, put the records that may be written, delete the partition's others.

        An existing item counts as "newer" only if it is live: an expired item is treated as absent, whatever
        TTL's deletion lag (the SQLite backend decides the same way).
        """
        writer = self.partition_write(program_id, partition_key, now=now)
        writer.add(records)
        result = writer.commit()
        _log.info(
            "candidate store (dynamodb): %s/%s written=%d deleted=%d skipped_newer=%d batches=%d retries=%d",
            *(program_id, partition_key, result.written, result.deleted, result.skipped_newer),
            *(result.batches, result.retries),
        )
        return result

    def partition_write(self, program_id: str, partition_key: str, now: float | None = None) -> PartitionWrite:
        """Each chunk put as it comes, the partition's other items deleted at the commit (`dynamodb_write`)."""
        return DynamoDbPartitionWrite(self, program_id, partition_key, now)

    def _newer_elsewhere(self, program_id: str, partition_key: str, records: list[Record], now: float) -> set[str]:
        """Customers whose live item in the store is from a newer partition (BatchGetItem of keys and partitions)."""
        keys = [{"pk": {"S": r["customerId"]}, "sk": {"S": program_id}} for r in records]
        existing = self._batch_get(
            self.table_name, keys, "#pk, #p, #e", {"#pk": "pk", "#p": "partitionKey", "#e": "expiresAt"}
        )
        return {
            item["pk"]["S"]
            for item in existing
            if item.get("partitionKey", {}).get("S", "") > partition_key and float(item["expiresAt"]["N"]) > now
        }

    def _stale_deletes(self, program_id: str, partition_key: str, wanted: set[str]) -> list[dict[str, Any]]:
        """DeleteRequests for the partition's items whose customer is not in `wanted` (GSI3, keys only)."""
        return [
            {"DeleteRequest": {"Key": {"pk": item["pk"], "sk": item["sk"]}}}
            for item in self._query(
                TableName=self.table_name,
                IndexName=GSI3,
                KeyConditionExpression="gsi3pk = :p AND begins_with(gsi3sk, :prefix)",
                ExpressionAttributeValues={":p": {"S": program_id}, ":prefix": {"S": f"{partition_key}#"}},
                ProjectionExpression="pk, sk",
            )
            if item["pk"]["S"] not in wanted
        ]

    def delete_customer(self, customer_id: str) -> int:
        """Erase the customer's items in every program (expired ones included): one Query, batch deletes."""
        keys = [
            {"DeleteRequest": {"Key": {"pk": item["pk"], "sk": item["sk"]}}}
            for item in self._query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :c",
                ExpressionAttributeValues={":c": {"S": customer_id}},
                ProjectionExpression="pk, sk",
                ConsistentRead=True,
            )
        ]
        self._write_all(self.table_name, keys)
        return len(keys)

    # -- reads -------------------------------------------------------------------------------------------------

    def get(self, customer_id: str, program_id: str, now: float | None = None) -> Record | None:
        """The customer's live candidate of the program, or None (GetItem)."""
        item = (
            self.client()
            .get_item(TableName=self.table_name, Key={"pk": {"S": customer_id}, "sk": {"S": program_id}})
            .get("Item")
        )
        if item is None or float(item["expiresAt"]["N"]) <= resolve_now(now):
            return None
        return from_item(item)

    def query_by_segment(
        self,
        program_id: str,
        segment: str,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
        offer_type: str | None = None,
    ) -> Page:
        """See `CandidateStore.query_by_segment` (GSI1, highest score first)."""
        condition = "gsi1pk = :h"
        values: dict[str, Any] = {":h": {"S": f"{program_id}#{segment}"}}
        if min_score is not None:
            condition += " AND gsi1sk >= :min"
            values[":min"] = {"N": number(float(min_score))}
        extra = None
        if offer_type is not None:
            extra = "offerType = :ot"
            values[":ot"] = {"S": offer_type}
        return self._page(GSI1, condition, values, limit, cursor, now, extra_filter=extra)

    def query_by_score(
        self,
        program_id: str,
        offer_type: str,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        """See `CandidateStore.query_by_score` (GSI4, highest score first)."""
        condition = "gsi2pk = :h"
        values: dict[str, Any] = {":h": {"S": f"{program_id}#{offer_type}"}}
        if min_score is not None:
            condition += " AND gsi4sk >= :min"
            values[":min"] = {"N": number(float(min_score))}
        return self._page(GSI4, condition, values, limit, cursor, now)

    def query_by_offer_type(
        self,
        program_id: str,
        offer_type: str,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        """See `CandidateStore.query_by_offer_type` (GSI2, newest partition first)."""
        return self._page(GSI2, "gsi2pk = :h", {":h": {"S": f"{program_id}#{offer_type}"}}, limit, cursor, now)

    def query_by_churn_reason(
        self,
        program_id: str,
        churn_reason: str,
        since_date: date | str | None = None,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        """See `CandidateStore.query_by_churn_reason` (GSI5: partition date, then score, newest and highest first)."""
        condition, values, extra = churn_query(program_id, churn_reason, since_date, min_score)
        return self._page(GSI5, condition, values, limit, cursor, now, extra_filter=extra)

    def _page(
        self,
        index: str,
        condition: str,
        values: dict[str, Any],
        limit: int,
        cursor: str | None,
        now: float | None,
        extra_filter: str | None = None,
    ) -> Page:
        """Live items of an index, highest sort key first, `limit` at most, and a cursor iff more live items exist.

        DynamoDB applies Limit before the expiry filter, so a page can come back short or empty while more live
        items follow: keep querying until `limit` live items are in hand and one more is seen, or the index is
        exhausted.  The cursor is the ExclusiveStartKey of the last item *returned* (not LastEvaluatedKey, which
        may lie beyond it), so no item is skipped or repeated.
        """
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        hash_attr, range_attr = INDEX_KEYS[index]
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "FilterExpression": "#e > :now" + (f" AND {extra_filter}" if extra_filter else ""),
            "ExpressionAttributeNames": {"#e": "expiresAt"},
            "ExpressionAttributeValues": {**values, ":now": {"N": number(resolve_now(now))}},
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        if cursor is not None:
            kwargs["ExclusiveStartKey"] = decode_key(cursor, ("pk", "sk", hash_attr, range_attr), values[":h"])
        items: list[dict] = []
        for raw in self._query(**kwargs):
            if len(items) == limit:  # a live item beyond the page: there is a next page
                last = items[-1]
                return Page(
                    items=[from_item(i) for i in items],
                    next_cursor=encode_key({a: last[a] for a in ("pk", "sk", hash_attr, range_attr)}),
                )
            items.append(raw)
        return Page(items=[from_item(i) for i in items], next_cursor=None)

    def customer_candidates(self, customer_id: str, now: float | None = None) -> list[Record]:
        """The customer's live candidates in every program (one Query)."""
        return [
            from_item(item)
            for item in self._query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :c",
                FilterExpression="#e > :now",
                ExpressionAttributeNames={"#e": "expiresAt"},
                ExpressionAttributeValues={":c": {"S": customer_id}, ":now": {"N": number(resolve_now(now))}},
            )
        ]

    def count(self, program_id: str, partition_key: str | None = None, now: float | None = None) -> int:
        """Select=COUNT on GSI3 (keys and expiresAt only): no item is transferred."""
        condition = "gsi3pk = :p"
        values = {":p": {"S": program_id}, ":now": {"N": number(resolve_now(now))}}
        if partition_key is not None:
            condition += " AND begins_with(gsi3sk, :prefix)"
            values[":prefix"] = {"S": f"{partition_key}#"}
        return query_count(
            self.client(),
            TableName=self.table_name,
            IndexName=GSI3,
            KeyConditionExpression=condition,
            FilterExpression="#e > :now",
            ExpressionAttributeNames={"#e": "expiresAt"},
            ExpressionAttributeValues=values,
        )

    def expired_present(self, program_id: str, before: float) -> int:
        """Select=COUNT on GSI3 of the program's items whose expiresAt is at or before `before`: what DynamoDB's TTL
        sweeper has not deleted yet (it deletes within days of expiry, not at once)."""
        return query_count(
            self.client(),
            TableName=self.table_name,
            IndexName=GSI3,
            KeyConditionExpression="gsi3pk = :p",
            FilterExpression="#e <= :before",
            ExpressionAttributeNames={"#e": "expiresAt"},
            ExpressionAttributeValues={":p": {"S": program_id}, ":before": {"N": number(before)}},
        )

    # -- score cache -------------------------------------------------------------------------------------------

    def get_cached_scores(self, namespace: str, keys: Iterable[str], now: float | None = None) -> dict[str, float]:
        """Cached scores still live (BatchGetItem); keys without one are absent."""
        by_pk = {f"{namespace}#{k}": k for k in dict.fromkeys(keys)}
        if not by_pk:
            return {}
        keys_ = [{"pk": {"S": pk}} for pk in by_pk]
        items = self._batch_get(self.score_cache_table_name, keys_, *SCORE_PROJECTION)
        return live_scores(items, by_pk, resolve_now(now))

    def put_cached_scores(self, namespace: str, scores: Mapping[str, float], expires_at: int) -> int:
        """Write scores to the cache until `expires_at` (BatchWriteItem); how many."""
        requests = [{"PutRequest": {"Item": score_item(namespace, k, v, expires_at)}} for k, v in scores.items()]
        self._write_all(self.score_cache_table_name, requests)
        return len(requests)
