"""DynamoDB candidate store: production (ENGAGE_ENV=prod), boto3 low-level client.

Physical layout of the candidates table (`table_name`), every key a String unless said otherwise:

  pk      HASH   customerId            } together the spec's "customerId#programId" primary key: one item per
  sk      RANGE  programId             } customer and program; split in two so that a customer's candidates in
                                         every program are one Query (serving API, erasure) without a fourth GSI.
  GSI1    gsi1pk = programId#segment,   gsi1sk = score (Number: sorts numerically, negatives included, no
          padding scheme to get wrong)                                   projection ALL (served as is)
  GSI2    gsi2pk = programId#offerType, gsi2sk = partitionKey#customerId projection ALL (served as is)
  GSI4    gsi2pk = programId#offerType, gsi4sk = score (Number)        projection ALL (GetCandidatesByScore)
  GSI3    gsi3pk = programId,           gsi3sk = partitionKey#customerId projection INCLUDE expiresAt
          (the program's items by partition: finds a partition's stale items to delete, and counts)
  expiresAt (Number, epoch seconds) is the table's TTL attribute.

The record's own fields are stored as top-level attributes (floats as Decimal, read back as float), next to the
key attributes above, which are stripped on read.  An item without a segment/score (offerType) is simply absent
from GSI1 (GSI2): sparse indexes, as in SQLite.

Score cache table (`score_cache_table_name`): pk = namespace#key (HASH only, spreads writes), score (Number),
expiresAt (Number, TTL).

Writes: BatchWriteItem in batches of exactly 25 requests, UnprocessedItems retried with capped exponential backoff
and full jitter, at most `max_attempts` calls per batch, then CandidateStoreWriteError.  BatchWriteItem takes no
condition, so "never overwrite a newer partition's candidate" is a read (BatchGetItem, 100 keys a call) before the
write.  Known window: a concurrent writer of a newer partition between that read and the write (or between the
GSI3 read and a stale-item delete) can be overwritten; runs of one program are serialised by Dagster, and
re-running the newer partition repairs it.
"""

from __future__ import annotations

import base64
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import boto3
import dagster as dg
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from pydantic import PrivateAttr

from resources.store.base import (
    CandidateStore,
    CandidateStoreWriteError,
    Page,
    Record,
    WriteResult,
    index_keys,
    resolve_now,
    validate_records,
)

_log = dg.get_dagster_logger("engage.store")

WRITE_BATCH = 25  # BatchWriteItem's maximum
GET_BATCH = 100  # BatchGetItem's maximum

GSI1, GSI2, GSI3, GSI4 = "gsi1", "gsi2", "gsi3", "gsi4"
_KEY_ATTRS = ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "gsi4sk")
_INDEX_KEYS = {
    GSI1: ("gsi1pk", "gsi1sk"),
    GSI2: ("gsi2pk", "gsi2sk"),
    GSI3: ("gsi3pk", "gsi3sk"),
    GSI4: ("gsi2pk", "gsi4sk"),
}
_FLOAT_FIELDS = ("score",)  # documented float fields: DynamoDB may normalise 1.0 to "1"; they come back as float
_FLOAT_MAP_FIELDS = ("scores",)


_session_lock = threading.Lock()
_shared_session: boto3.session.Session | None = None


def _get_session() -> boto3.session.Session:
    """One boto3 session per process: a new session re-parses the service models (~0.3 s); clients made from one
    session are thread-safe, the session itself is not: call it under _session_lock."""
    global _shared_session
    if _shared_session is None:
        _shared_session = boto3.session.Session()
    return _shared_session


class DynamoDbCandidateStore(CandidateStore):
    """Candidate store on two DynamoDB tables (see the module docstring for the key layout)."""

    table_name: str
    score_cache_table_name: str
    region_name: str
    endpoint_url: str | None = None
    max_attempts: int = 8  # BatchWriteItem/BatchGetItem calls per batch before giving up on unprocessed items
    backoff_base_s: float = 0.05
    backoff_max_s: float = 5.0
    write_concurrency: int = 4  # batches in flight at once (boto3 clients are thread-safe)

    _client: Any = PrivateAttr(default=None)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def client(self) -> Any:
        """The boto3 DynamoDB client, created once (lazily: constructing the resource needs no AWS access)."""
        if self._client is None:
            with _session_lock:
                if self._client is None:
                    self._client = _get_session().client(
                        "dynamodb",
                        region_name=self.region_name,
                        endpoint_url=self.endpoint_url,
                        config=Config(retries={"mode": "standard", "max_attempts": 10}),  # throttling, 5xx
                    )
        return self._client

    def create_tables(self) -> None:
        """Create both tables (pay per request) and enable their TTL; a table that already exists is left as is."""
        client = self.client()
        s = {"AttributeType": "S"}
        self._create_table(
            self.table_name,
            key_schema=[("pk", "HASH"), ("sk", "RANGE")],
            attributes={
                "pk": s,
                "sk": s,
                "gsi1pk": s,
                "gsi1sk": {"AttributeType": "N"},
                "gsi2pk": s,
                "gsi2sk": s,
                "gsi3pk": s,
                "gsi3sk": s,
                "gsi4sk": {"AttributeType": "N"},
            },
            indexes=[
                (GSI1, "gsi1pk", "gsi1sk", {"ProjectionType": "ALL"}),
                (GSI2, "gsi2pk", "gsi2sk", {"ProjectionType": "ALL"}),
                (GSI3, "gsi3pk", "gsi3sk", {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["expiresAt"]}),
                (GSI4, "gsi2pk", "gsi4sk", {"ProjectionType": "ALL"}),
            ],
        )
        self._create_table(self.score_cache_table_name, key_schema=[("pk", "HASH")], attributes={"pk": s}, indexes=[])
        for name in (self.table_name, self.score_cache_table_name):
            client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            ttl = client.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
            if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                client.update_time_to_live(
                    TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
                )

    def _create_table(self, name: str, key_schema: list, attributes: dict, indexes: list) -> None:
        client = self.client()
        kwargs: dict[str, Any] = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": a, "KeyType": t} for a, t in key_schema],
            "AttributeDefinitions": [{"AttributeName": a, **t} for a, t in attributes.items()],
        }
        if indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index,
                    "KeySchema": [{"AttributeName": h, "KeyType": "HASH"}, {"AttributeName": r, "KeyType": "RANGE"}],
                    "Projection": projection,
                }
                for index, h, r, projection in indexes
            ]
        try:
            client.create_table(**kwargs)
        except client.exceptions.ResourceInUseException:
            pass  # exists: creating is idempotent

    def _backoff(self, attempt: int) -> None:
        """Full jitter (AWS architecture blog): spreads retries of concurrent writers instead of synchronising them."""
        time.sleep(random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt)))

    def _batch_write(self, table: str, requests: list[dict]) -> int:
        """One BatchWriteItem batch (<= 25 requests) to completion; returns how many retry calls it took."""
        pending = requests
        for attempt in range(1, self.max_attempts + 1):
            response = self.client().batch_write_item(RequestItems={table: pending})
            pending = response.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                return attempt - 1
            if attempt < self.max_attempts:
                self._backoff(attempt)
        raise CandidateStoreWriteError(
            f"BatchWriteItem to {table}: {len(pending)} of {len(requests)} requests still unprocessed after "
            f"{self.max_attempts} attempts (throttled?); re-running is safe"
        )

    def _write_all(self, table: str, requests: list[dict]) -> tuple[int, int]:
        """All requests in batches of exactly 25 (the last one smaller); returns (batches, retries)."""
        batches = [requests[i : i + WRITE_BATCH] for i in range(0, len(requests), WRITE_BATCH)]
        retries = sum(self._map(lambda b: self._batch_write(table, b), batches))
        return len(batches), retries

    def _batch_get(self, table: str, keys: list[dict], projection: str, names: dict[str, str]) -> list[dict]:
        """BatchGetItem for any number of keys (100 a call), UnprocessedKeys retried like unprocessed writes."""

        def one(chunk: list[dict]) -> list[dict]:
            request: dict[str, Any] = {
                table: {"Keys": chunk, "ProjectionExpression": projection, "ExpressionAttributeNames": names}
            }
            items: list[dict] = []
            for attempt in range(1, self.max_attempts + 1):
                response = self.client().batch_get_item(RequestItems=request)
                items += response.get("Responses", {}).get(table, [])
                request = response.get("UnprocessedKeys") or {}
                if not request.get(table, {}).get("Keys"):
                    return items
                if attempt < self.max_attempts:
                    self._backoff(attempt)
            raise CandidateStoreWriteError(
                f"BatchGetItem on {table}: keys still unprocessed after {self.max_attempts} attempts"
            )

        chunks = [keys[i : i + GET_BATCH] for i in range(0, len(keys), GET_BATCH)]
        return [item for items in self._map(one, chunks) for item in items]

    def _map(self, fn: Callable[[Any], Any], jobs: list[Any]) -> list[Any]:
        if len(jobs) <= 1 or self.write_concurrency <= 1:
            return [fn(j) for j in jobs]
        with ThreadPoolExecutor(max_workers=min(self.write_concurrency, len(jobs))) as pool:
            return list(pool.map(fn, jobs))

    def _query(self, **kwargs: Any) -> Iterator[dict]:
        """Every raw item of a Query, page after page."""
        while True:
            response = self.client().query(**kwargs)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- writes ------------------------------------------------------------------------------------------------

    def replace_partition(
        self, program_id: str, partition_key: str, records: Sequence[Record], now: float | None = None
    ) -> WriteResult:
        """Read existing items' partitions, put the records that may be written, delete the partition's others.

        An existing item counts as "newer" only if it is live: an expired item is treated as absent, whatever
        TTL's deletion lag (the SQLite backend decides the same way).
        """
        now_ = resolve_now(now)
        unique, duplicates = validate_records(program_id, partition_key, records)
        keys = [{"pk": {"S": r["customerId"]}, "sk": {"S": program_id}} for r in unique]
        existing = self._batch_get(
            self.table_name, keys, "#pk, #p, #e", {"#pk": "pk", "#p": "partitionKey", "#e": "expiresAt"}
        )
        newer = {
            item["pk"]["S"]
            for item in existing
            if item.get("partitionKey", {}).get("S", "") > partition_key and float(item["expiresAt"]["N"]) > now_
        }
        puts = [
            {"PutRequest": {"Item": _to_item(r, program_id, partition_key)}}
            for r in unique
            if r["customerId"] not in newer
        ]
        put_batches, put_retries = self._write_all(self.table_name, puts)

        wanted = {r["customerId"] for r in unique}
        stale = [
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
        delete_batches, delete_retries = self._write_all(self.table_name, stale)

        result = WriteResult(
            written=len(puts),
            deleted=len(stale),
            skipped_newer=len(newer),
            batches=put_batches + delete_batches,
            retries=put_retries + delete_retries,
            extra={
                "put_batches": put_batches,
                "delete_batches": delete_batches,
                "get_calls": math.ceil(len(keys) / GET_BATCH),
                "duplicates_dropped": duplicates,
            },
        )
        _log.info(
            "candidate store (dynamodb): %s/%s written=%d deleted=%d skipped_newer=%d batches=%d retries=%d",
            program_id,
            partition_key,
            result.written,
            result.deleted,
            result.skipped_newer,
            result.batches,
            result.retries,
        )
        return result

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
        item = (
            self.client()
            .get_item(TableName=self.table_name, Key={"pk": {"S": customer_id}, "sk": {"S": program_id}})
            .get("Item")
        )
        if item is None or float(item["expiresAt"]["N"]) <= resolve_now(now):
            return None
        return _from_item(item)

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
        condition = "gsi1pk = :h"
        values: dict[str, Any] = {":h": {"S": f"{program_id}#{segment}"}}
        if min_score is not None:
            condition += " AND gsi1sk >= :min"
            values[":min"] = {"N": _number(float(min_score))}
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
        condition = "gsi2pk = :h"
        values: dict[str, Any] = {":h": {"S": f"{program_id}#{offer_type}"}}
        if min_score is not None:
            condition += " AND gsi4sk >= :min"
            values[":min"] = {"N": _number(float(min_score))}
        return self._page(GSI4, condition, values, limit, cursor, now)

    def query_by_offer_type(
        self,
        program_id: str,
        offer_type: str,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        return self._page(GSI2, "gsi2pk = :h", {":h": {"S": f"{program_id}#{offer_type}"}}, limit, cursor, now)

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
        hash_attr, range_attr = _INDEX_KEYS[index]
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "FilterExpression": "#e > :now" + (f" AND {extra_filter}" if extra_filter else ""),
            "ExpressionAttributeNames": {"#e": "expiresAt"},
            "ExpressionAttributeValues": {**values, ":now": {"N": _number(resolve_now(now))}},
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        if cursor is not None:
            kwargs["ExclusiveStartKey"] = _decode_key(cursor, ("pk", "sk", hash_attr, range_attr), values[":h"])
        items: list[dict] = []
        for raw in self._query(**kwargs):
            if len(items) == limit:  # a live item beyond the page: there is a next page
                last = items[-1]
                return Page(
                    items=[_from_item(i) for i in items],
                    next_cursor=_encode_key({a: last[a] for a in ("pk", "sk", hash_attr, range_attr)}),
                )
            items.append(raw)
        return Page(items=[_from_item(i) for i in items], next_cursor=None)

    def customer_candidates(self, customer_id: str, now: float | None = None) -> list[Record]:
        return [
            _from_item(item)
            for item in self._query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :c",
                FilterExpression="#e > :now",
                ExpressionAttributeNames={"#e": "expiresAt"},
                ExpressionAttributeValues={":c": {"S": customer_id}, ":now": {"N": _number(resolve_now(now))}},
            )
        ]

    def count(self, program_id: str, partition_key: str | None = None, now: float | None = None) -> int:
        """Select=COUNT on GSI3 (keys and expiresAt only): no item is transferred."""
        condition = "gsi3pk = :p"
        values = {":p": {"S": program_id}, ":now": {"N": _number(resolve_now(now))}}
        if partition_key is not None:
            condition += " AND begins_with(gsi3sk, :prefix)"
            values[":prefix"] = {"S": f"{partition_key}#"}
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": GSI3,
            "KeyConditionExpression": condition,
            "FilterExpression": "#e > :now",
            "ExpressionAttributeNames": {"#e": "expiresAt"},
            "ExpressionAttributeValues": values,
            "Select": "COUNT",
        }
        total = 0
        while True:
            response = self.client().query(**kwargs)
            total += response["Count"]
            if "LastEvaluatedKey" not in response:
                return total
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- score cache -------------------------------------------------------------------------------------------

    def get_cached_scores(self, namespace: str, keys: Iterable[str], now: float | None = None) -> dict[str, float]:
        by_pk = {f"{namespace}#{k}": k for k in dict.fromkeys(keys)}
        if not by_pk:
            return {}
        now_ = resolve_now(now)
        items = self._batch_get(
            self.score_cache_table_name,
            [{"pk": {"S": pk}} for pk in by_pk],
            "#pk, #s, #e",
            {"#pk": "pk", "#s": "score", "#e": "expiresAt"},
        )
        return {
            by_pk[item["pk"]["S"]]: float(item["score"]["N"]) for item in items if float(item["expiresAt"]["N"]) > now_
        }

    def put_cached_scores(self, namespace: str, scores: Mapping[str, float], expires_at: int) -> int:
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": f"{namespace}#{k}"},
                        "score": {"N": _number(float(v))},
                        "expiresAt": {"N": str(int(expires_at))},
                    }
                }
            }
            for k, v in scores.items()
        ]
        self._write_all(self.score_cache_table_name, requests)
        return len(requests)


# -- conversions ---------------------------------------------------------------------------------------------------


def _number(value: float | int) -> str:
    """A DynamoDB Number's wire form.  repr() of a float is the shortest string that reads back to the same
    float, so Decimal(repr(x)) -> float is exact; NaN and infinities have no DynamoDB representation."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("DynamoDB cannot store NaN or infinite numbers")
        return repr(value)
    return str(value)


def to_dynamo(value: Any) -> Any:
    """Python (JSON-like) value -> what boto3's TypeSerializer accepts: floats become Decimal, tuples lists."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):  # numpy float64 included (a float subclass)
        return Decimal(_number(float(value)))
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    if hasattr(value, "item"):  # other numpy scalars (int64, bool_)
        return to_dynamo(value.item())
    raise ValueError(f"cannot store a value of type {type(value).__name__} in DynamoDB")


def from_dynamo(value: Any) -> Any:
    """Inverse of `to_dynamo` after TypeDeserializer: Decimal -> int when written as an integer, else float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


_SER = TypeSerializer()
_DESER = TypeDeserializer()


def _to_item(rec: Record, program_id: str, partition_key: str) -> dict[str, Any]:
    """A record as a low-level DynamoDB item: its fields plus the key attributes of the table and the GSIs."""
    clash = [k for k in rec if k in _KEY_ATTRS]
    if clash:
        raise ValueError(f"candidate record fields {clash} collide with the store's key attributes")
    customer_id = rec["customerId"]
    item = {k: _SER.serialize(to_dynamo(v)) for k, v in rec.items()}
    item["pk"] = {"S": customer_id}
    item["sk"] = {"S": program_id}
    gsi1pk, gsi2pk = index_keys(rec, program_id)
    score = rec.get("score")
    if gsi1pk is not None:
        item["gsi1pk"] = {"S": gsi1pk}
        item["gsi1sk"] = {"N": _number(float(score))}
    if gsi2pk is not None:
        item["gsi2pk"] = {"S": gsi2pk}
        item["gsi2sk"] = {"S": f"{partition_key}#{customer_id}"}
        if score is not None:
            item["gsi4sk"] = {"N": _number(float(score))}
    item["gsi3pk"] = {"S": program_id}
    item["gsi3sk"] = {"S": f"{partition_key}#{customer_id}"}
    return item


def _from_item(item: Mapping[str, Any]) -> Record:
    """A low-level item back to the record that was written: key attributes dropped, numbers as int/float."""
    rec = {k: from_dynamo(_DESER.deserialize(v)) for k, v in item.items() if k not in _KEY_ATTRS}
    for f in _FLOAT_FIELDS:
        if isinstance(rec.get(f), int) and not isinstance(rec[f], bool):
            rec[f] = float(rec[f])
    for f in _FLOAT_MAP_FIELDS:
        if isinstance(rec.get(f), dict):
            rec[f] = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in rec[f].items()}
    return rec


def _encode_key(key: Mapping[str, Any]) -> str:
    """Cursor = URL-safe base64 of the low-level ExclusiveStartKey (opaque to callers)."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_key(cursor: str, attrs: Sequence[str], hash_value: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a cursor: exactly this index's key attributes, and the same index partition as the query."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ok = (
            isinstance(key, dict)
            and set(key) == set(attrs)
            and key[attrs[2]] == dict(hash_value)
            and all(isinstance(v, dict) and len(v) == 1 for v in key.values())
        )
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ValueError("invalid cursor for this query")
    return key
