"""The delivery ledger on one DynamoDB table: production (ENGAGE_ENV=prod), where several Dagster run workers on
different machines deliver at once and a SQLite file cannot be shared.

Same interface, return types and state machine as `resources.delivery_ledger.sqlite.DeliveryLedger` (read its
docstring first); this docstring says only how the table holds it and where DynamoDB forces a different mechanism.

Items (every key a String; `pk`/`sk` the table key):

  touch         pk = T#<touchKey>        sk = T   the ledger row, attributes named as the plan's columns
                                                  (touchKey, programId, … nextAttemptAt, state, reason, attempts,
                                                  claimToken, claimedAt, sentAt, providerId, updatedAt, payload);
                                                  an attribute that is NULL in SQLite is absent here
  customer      pk = C#<customerId>      sk = C   version (Number) and contacts: {touchKey: [programId, subjectId,
                                                  channel, claimedAt]} for the customer's touches in sending/sent
  suppression   pk = S#<channel>#<sha256 of the address>   sk = S   reason, createdAt (never the raw address)
  program       pk = PROGRAMS            sk = <programId>   (the programs `counts()` walks without a Scan)

Sparse GSIs on touches (an item without the index's key attributes is not in the index):

  due    duePk = programId, dueSk = <nextAttemptAt>#touchKey   only while state = planned     projection ALL
  doubt  doubtPk = programId, doubtSk = <claimedAt>#touchKey   only while state = sending     projection ALL
  prog   progPk = programId, progSk = partitionKey#touchKey    every touch; INCLUDE channel, state, reason,
                                                               partitionKey (counts, a re-plan's removals)
  cust   custPk = customerId                                   every touch; KEYS_ONLY (erasure)

<nextAttemptAt>/<claimedAt> are the integer as a fixed-width decimal (offset by 2^62, 20 digits), so string order
is numeric order and ties go by touch key, as in SQLite.  `due`/`in_doubt` are Query only, keyset-paged with
ExclusiveStartKey: memory stays one page.  Every transition is a
conditional UpdateItem (state, and the claim token after the claim) that also adds or removes the touch's index
attributes, so a process that lost its claim cannot overwrite a newer outcome.

CLAIM RULE (the cross-process race on caps).  SQLite checks pressure and claims a page in one BEGIN IMMEDIATE
transaction.  Here `transaction()` yields a `DynamoDbLedgerTransaction` that remembers, per customer, the contact
item it read (strongly consistent) when `contacts_since` loaded the pressure: its `version` and entries.  A claim
is one TransactWriteItems: touch planned → sending (condition state = planned) AND customer item
version = the version read → version + 1 with the new contact entry.  If another process claimed any touch of that
customer since the read, the version moved, the whole claim fails (`claim` returns False) and the touch stays
planned: the next delivery run re-evaluates it against the new contacts.  The same customer's later claims in the
same transaction fail without a call.  The claim of a touch from the page `due()` returned last needs no read (the
ledger keeps that page's customer/program/subject/channel); any other touch is read first.  Touches that leave
sending/sent (failed, retry, suppressed after the claim) drop their entry with a second conditional update after
the authoritative touch update, which does not bump the version (it only loosens a cap); a crash between the two
leaves an entry that over-counts: the safe direction.  Entries older than both CONTACT_RETENTION_S (a year and a
month) and the oldest `since` read in the transaction are pruned by the customer's next claim.  Not covered by the
version: an address put on the suppression list between the pressure read and the claim (a bounce of another
customer's message with the same address) — that one send still goes out.

Differences that follow from DynamoDB:
- GSIs are eventually consistent: `due`, `in_doubt`, `counts`, `due_summary` and the erasure's lookup may miss or
  repeat a change made within about a second.  Harmless for delivery (every transition is conditional on the base
  item) and for erasure (delivery re-checks erasures per page); a touch planned in that second may survive an
  erasure until the next one.
- `in_doubt` pages oldest claim first (SQLite: by touch key); the engine does not depend on the order.
- `plan` reads the partition's existing touches (BatchGetItem, consistent) and writes each with a conditional
  PutItem (new: attribute_not_exists; re-plan: still planned with the attempts and next_attempt_at read, so
  SQLite's `max(next_attempt_at)` rule holds), `write_concurrency` at a time; it is not one transaction.

Costs (on-demand): a claim is a 2-item transaction (2 × 2 write units, more for a customer item over 1 KB: one
contacted weekly for a year is about 6 KB); `mark_sent` 1 write unit; every write also costs a write unit per
index it changes (a claim: due, doubt and prog); `counts()` reads every touch of a program
through `prog` (about 40 touches per read unit: call it for reports, not per send); `due_summary()` counts the due
touches through `due` (projection ALL: about 4 touches per read unit, each sensor tick while a backlog waits).
All of a program's index writes share one partition-key value (programId); DynamoDB splits a hot key by sort-key
range, but a program that needs more than a few thousand transitions a second should shard it (programId#n) and
merge the shards' pages.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from resources.delivery_ledger.sqlite import (
    HELD_OUT,
    PAYLOAD_COLUMNS,
    PLAN_COLUMNS,
    LedgerRow,
    PlanResult,
    address_hash,
    key_hash,
)

log = logging.getLogger("engage.delivery")

DUE, DOUBT, PROG, CUST = "due", "doubt", "prog", "cust"
CONTACT_RETENTION_S = 395 * 86_400  # longer than any cap window (the longest is a year)
GET_BATCH = 100  # BatchGetItem's maximum
_PRUNE_PER_CLAIM = 20  # old contact entries one claim removes (keeps its update expression small)
_OFFSET = 2**62
_PROGRAMS = "PROGRAMS"
_RETRYABLE = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
# LedgerRow's fields in order, as attribute names
_ROW_ATTRS = (
    "touchKey",
    "programId",
    "partitionKey",
    "customerId",
    "subjectId",
    "touchId",
    "channel",
    "channelId",
    "templateId",
    "dueAt",
    "expiresAt",
    "nextAttemptAt",
    "state",
    "reason",
    "attempts",
    "claimToken",
    "claimedAt",
    "sentAt",
    "providerId",
    "payload",
)
_SER, _DE = TypeSerializer(), TypeDeserializer()


def _ord(n: int) -> str:
    """An integer as a fixed-width string whose string order is the integer order (for string sort keys)."""
    return f"{int(n) + _OFFSET:020d}"


def _unord(s: str) -> int:
    return int(s[:20]) - _OFFSET


def _touch_pk(touch_key: str) -> dict[str, Any]:
    return {"pk": {"S": f"T#{touch_key}"}, "sk": {"S": "T"}}


def _customer_pk(customer_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"C#{customer_id}"}, "sk": {"S": "C"}}


def _plain(value: Any) -> Any:
    """A deserialized attribute with Numbers as int (the ledger stores no fractions outside `payload`)."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _item(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_DE.deserialize(v)) for k, v in raw.items()}


def _row(raw: dict[str, Any]) -> LedgerRow:
    d = _item(raw)
    d.setdefault("attempts", 0)
    return LedgerRow(*(d.get(a) for a in _ROW_ATTRS))


def _code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


class _Update:
    """One conditional UpdateItem (or transaction Update): every attribute through a #name, since DynamoDB reserves
    words such as `state`, and map keys (touch keys) may hold '.' or '#'."""

    def __init__(self, key: dict[str, Any]):
        self.key = key
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.conds: list[str] = []

    def n(self, *path: str) -> str:
        out = []
        for part in path:
            ph = f"#n{len(self.names)}"
            self.names[ph] = part
            out.append(ph)
        return ".".join(out)

    def v(self, value: Any) -> str:
        ph = f":v{len(self.values)}"
        self.values[ph] = _SER.serialize(value)
        return ph

    def set(self, **attrs: Any) -> _Update:
        """SET each attribute; a None value REMOVEs it (NULL in SQLite is an absent attribute here)."""
        for name, value in attrs.items():
            if value is None:
                self.removes.append(self.n(name))
            else:
                self.sets.append(f"{self.n(name)} = {self.v(value)}")
        return self

    def set_path(self, path: tuple[str, ...], value: Any) -> _Update:
        self.sets.append(f"{self.n(*path)} = {self.v(value)}")
        return self

    def copy(self, name: str, source: str) -> _Update:
        self.sets.append(f"{self.n(name)} = {self.n(source)}")
        return self

    def increment(self, name: str) -> _Update:
        self.sets.append(f"{self.n(name)} = {self.n(name)} + {self.v(1)}")
        return self

    def add(self, name: str, amount: Any) -> _Update:
        """SET the Number attribute to itself plus `amount` (an absent attribute counts as 0)."""
        n = self.n(name)
        self.sets.append(f"{n} = if_not_exists({n}, {self.v(0)}) + {self.v(amount)}")
        return self

    def remove(self, *names: str) -> _Update:
        self.removes.extend(self.n(a) for a in names)
        return self

    def remove_path(self, path: tuple[str, ...]) -> _Update:
        self.removes.append(self.n(*path))
        return self

    def where(self, **attrs: Any) -> _Update:
        """Condition: each attribute equals the value (None: the attribute is absent)."""
        for name, value in attrs.items():
            self.conds.append(
                f"attribute_not_exists({self.n(name)})" if value is None else f"{self.n(name)} = {self.v(value)}"
            )
        return self

    def where_at_most(self, name: str, limit: Any) -> _Update:
        """Condition: the Number attribute is at most `limit` (absent: 0, so `limit` must not be negative).
        DynamoDB conditions have no arithmetic: `x + cost <= budget` is asked as `x <= budget - cost`."""
        n = self.n(name)
        self.conds.append(f"(attribute_not_exists({n}) OR {n} <= {self.v(limit)})")
        return self

    def where_exists(self, *path: str) -> _Update:
        self.conds.append(f"attribute_exists({self.n(*path)})")
        return self

    def request(self, table: str) -> dict[str, Any]:
        expr = " ".join(
            part
            for part in (
                "SET " + ", ".join(self.sets) if self.sets else "",
                "REMOVE " + ", ".join(self.removes) if self.removes else "",
            )
            if part
        )
        req: dict[str, Any] = {
            "TableName": table,
            "Key": self.key,
            "UpdateExpression": expr,
            "ExpressionAttributeNames": self.names,
        }
        if self.conds:
            req["ConditionExpression"] = " AND ".join(self.conds)
        if self.values:
            req["ExpressionAttributeValues"] = self.values
        return req


def _gsi(name: str, hash_key: str, range_key: str | None, projection: dict[str, Any]) -> dict[str, Any]:
    """A GlobalSecondaryIndexes entry for `DynamoDbTable._create_table`."""
    keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return {"IndexName": name, "KeySchema": keys, "Projection": projection}


def _leave_planned(u: _Update) -> _Update:
    return u.remove("duePk", "dueSk")


def _leave_sending(u: _Update) -> _Update:
    return u.remove("doubtPk", "doubtSk")


def _due(u: _Update, touch_key: str, at: int) -> _Update:
    return u.set(nextAttemptAt=at, dueSk=f"{_ord(at)}#{touch_key}")


@dataclass
class _Contacts:
    """A customer's contact item as read in one transaction (version 0: no item)."""

    version: int
    entries: dict[str, list[Any]]  # touchKey -> [programId, subjectId, channel, claimedAt]
    stale: bool = False  # a claim found the version moved: the pressure read for this customer is out of date


@dataclass
class DynamoDbLedgerTransaction:
    """What `transaction()` yields (the engine's `conn`): the contact items read by `contacts_since`, so the
    claims that follow are conditional on them (CLAIM RULE in the module docstring)."""

    customers: dict[str, _Contacts] = field(default_factory=dict)
    since: int | None = None  # the oldest contact time read: entries newer than it are never pruned


class DynamoDbTable:
    """One DynamoDB table's plumbing, shared by the DynamoDB ledgers (this one and `refunds_dynamodb`): the client
    (made on first use; thread-safe, as boto3 clients are), table creation, paged queries, consistent batch reads,
    conditional updates and transactions with their retries."""

    def __init__(
        self,
        table_name: str,
        client_factory: Callable[[], Any] | None = None,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 10,
        write_concurrency: int = 8,
        conflict_retries: int = 5,
    ):
        self.table_name = table_name
        self.region_name = region_name
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts  # boto3 standard retries (throttling, 5xx) and unprocessed batch keys
        self.write_concurrency = write_concurrency
        self.conflict_retries = conflict_retries  # a cancelled transaction: conflict with another, throttled
        self._client_factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------------------------------
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._client_factory() if self._client_factory else self._default_client()
        return self._client

    def _default_client(self) -> Any:
        from botocore.config import Config

        from resources.store.dynamodb import _get_session, _session_lock

        with _session_lock:
            return _get_session().client(
                "dynamodb",
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                config=Config(retries={"mode": "standard", "max_attempts": self.max_attempts}),
            )

    def close(self) -> None:
        """Nothing to close (the boto3 client holds a pool); here so both ledgers can be used alike."""

    def _create_table(self, attributes: tuple[str, ...], indexes: list[dict[str, Any]]) -> None:
        """Create the table (pk, sk and every index key a String; pay per request) with these GSIs (`_gsi`); an
        existing table is left as is."""
        client = self.client()
        try:
            client.create_table(
                TableName=self.table_name,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attributes],
                GlobalSecondaryIndexes=indexes,
            )
        except client.exceptions.ResourceInUseException:
            pass  # exists: creating is idempotent
        client.get_waiter("table_exists").wait(TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    def _map(self, fn: Callable[[Any], Any], jobs: list[Any]) -> list[Any]:
        if len(jobs) <= 1 or self.write_concurrency <= 1:
            return [fn(j) for j in jobs]
        with ThreadPoolExecutor(max_workers=min(self.write_concurrency, len(jobs))) as pool:
            return list(pool.map(fn, jobs))

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a Query, page after page (boto3's paginator follows LastEvaluatedKey)."""
        for page in self.client().get_paginator("query").paginate(TableName=self.table_name, **kwargs):
            yield from page.get("Items", [])

    def _get_many(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """BatchGetItem (strongly consistent) for any number of distinct keys; unprocessed keys retried."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(keys), GET_BATCH):
            request: dict[str, Any] = {self.table_name: {"Keys": keys[i : i + GET_BATCH], "ConsistentRead": True}}
            for attempt in range(self.max_attempts):
                response = self.client().batch_get_item(RequestItems=request)
                out += response.get("Responses", {}).get(self.table_name, [])
                request = response.get("UnprocessedKeys") or {}
                if not request.get(self.table_name, {}).get("Keys"):
                    break
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))  # full jitter
            else:
                raise RuntimeError(f"BatchGetItem on {self.table_name}: keys still unprocessed (throttled?)")
        return out

    def _update(self, u: _Update, returns: bool = False) -> dict[str, Any] | None:
        """A conditional UpdateItem: None when the condition failed, else the item after it (plain values) if
        `returns`, else {}."""
        try:
            response = self.client().update_item(
                **u.request(self.table_name), ReturnValues="ALL_NEW" if returns else "NONE"
            )
            return _item(response["Attributes"]) if returns else {}
        except ClientError as err:
            if _code(err) == "ConditionalCheckFailedException":
                return None
            raise

    def _transact(self, updates: list[_Update]) -> list[str] | None:
        """TransactWriteItems of conditional updates: None when it committed, else each item's cancellation code
        ("None" for an item whose condition held).  boto3 does not retry a cancelled transaction: a conflict with
        another in-flight transaction on the same item, or throttling, is retried here (the conditions are
        evaluated again); a failed condition is the answer."""
        attempt = 0
        while True:
            try:
                self.client().transact_write_items(
                    TransactItems=[{"Update": u.request(self.table_name)} for u in updates]
                )
                return None
            except ClientError as err:
                if _code(err) != "TransactionCanceledException":
                    raise
                codes = [r.get("Code", "None") for r in err.response.get("CancellationReasons", [])]
                codes = codes or ["Unknown"] * len(updates)
                if "ConditionalCheckFailed" in codes or not _RETRYABLE & set(codes) or attempt >= self.conflict_retries:
                    return codes
            time.sleep(random.uniform(0, 0.02 * 2**attempt))  # full jitter
            attempt += 1


class DynamoDbDeliveryLedger(DynamoDbTable):
    """The delivery ledger on one DynamoDB table (see the module docstring).  Thread-safe: boto3 clients are."""

    def __init__(self, *args: Any, **kwargs: Any):
        """`DynamoDbTable`'s arguments: table_name, client_factory, region_name, endpoint_url, max_attempts,
        write_concurrency, conflict_retries."""
        super().__init__(*args, **kwargs)
        # Identity (customer, program, subject, channel) of the rows `due()`/`in_doubt()` returned last: the claim
        # that follows needs it for the customer item and reads nothing.  One page, replaced per page.
        self._seen: dict[str, tuple[str, str, str, str]] = {}

    def create_table(self) -> None:
        """Create the table with its four GSIs (pay per request); an existing table is left as is."""
        self._create_table(
            ("pk", "sk", "duePk", "dueSk", "doubtPk", "doubtSk", "progPk", "progSk", "custPk"),
            [
                _gsi(DUE, "duePk", "dueSk", {"ProjectionType": "ALL"}),
                _gsi(DOUBT, "doubtPk", "doubtSk", {"ProjectionType": "ALL"}),
                _gsi(
                    PROG,
                    "progPk",
                    "progSk",
                    {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["channel", "state", "reason", "partitionKey"]},
                ),
                _gsi(CUST, "custPk", None, {"ProjectionType": "KEYS_ONLY"}),
            ],
        )

    @contextmanager
    def transaction(self) -> Iterator[DynamoDbLedgerTransaction]:
        """The scope of one page's pressure read and claims.  Writes are not deferred: each is its own conditional
        write, and the claims are conditional on what the pressure read saw (CLAIM RULE)."""
        yield DynamoDbLedgerTransaction()

    def _get(self, touch_key: str) -> dict[str, Any] | None:
        raw = self.client().get_item(TableName=self.table_name, Key=_touch_pk(touch_key), ConsistentRead=True)
        return raw.get("Item")

    def _remember(self, page: list[LedgerRow]) -> list[LedgerRow]:
        self._seen = {r.touch_key: (r.customer_id, r.program_id, r.subject_id, r.channel) for r in page}
        return page

    # -- planning --------------------------------------------------------------------------------------------------
    def plan(self, table: pa.Table, program_id: str, partition_key: str, now: int) -> PlanResult:
        """Insert a partition's touch plan; re-planning replaces only touches still `planned` and never un-sends
        (the same rules and counts as `DeliveryLedger.plan`)."""
        missing = [c for c in PLAN_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"touch plan lacks column(s) {missing}")
        outcomes: Counter = Counter()
        held = 0
        plan_keys: set[str] = set()
        for batch in table.select(list(PLAN_COLUMNS)).to_batches(max_chunksize=1_000):
            items = []
            for r in batch.to_pylist():
                if r["programId"] != program_id or r["partitionKey"] != partition_key:
                    raise ValueError("touch plan row belongs to another program or partition")
                items.append(self._plan_item(r, now))
                held += items[-1]["state"] == "suppressed"
                plan_keys.add(r["touchKey"])
            keys = list({i["touchKey"]: _touch_pk(i["touchKey"]) for i in items}.values())
            current = {(d := _item(raw))["touchKey"]: d for raw in self._get_many(keys)}
            outcomes.update(
                self._map(lambda i, current=current: self._put_planned(i, current.get(i["touchKey"])), items)
            )
        self.client().put_item(TableName=self.table_name, Item={"pk": {"S": _PROGRAMS}, "sk": {"S": program_id}})
        removed = self._remove_unplanned(program_id, partition_key, plan_keys)
        return PlanResult(outcomes["inserted"], outcomes["replaced"], removed, outcomes["kept"], held)

    @staticmethod
    def _plan_item(r: dict[str, Any], now: int) -> dict[str, Any]:
        """A plan row as a touch item (without attempts/nextAttemptAt/due index, which depend on what exists)."""
        holdout = bool(r["holdout"])
        return {
            "touchKey": r["touchKey"],
            "programId": r["programId"],
            "partitionKey": r["partitionKey"],
            "customerId": str(r["customerId"]),
            "subjectId": str(r["subjectId"]),
            "touchId": str(r["touchId"]),
            "channel": r["channel"],
            "channelId": r["channelId"],
            "templateId": r["templateId"],
            "dueAt": int(r["dueAt"]),
            "expiresAt": None if r["expiresAt"] is None else int(r["expiresAt"]),
            "state": "suppressed" if holdout else "planned",
            "reason": HELD_OUT if holdout else None,
            "updatedAt": now,
            "payload": json.dumps({c: r[c] for c in PAYLOAD_COLUMNS}, separators=(",", ":")),
            "progPk": r["programId"],
            "progSk": f"{r['partitionKey']}#{r['touchKey']}",
            "custPk": str(r["customerId"]),
        }

    def _put_planned(self, item: dict[str, Any], current: dict[str, Any] | None) -> str:
        """Write one plan row: "inserted" (new), "replaced" (was still planned) or "kept" (past planned)."""
        client = self.client()
        for _ in range(self.conflict_retries + 1):
            if current is not None and current.get("state") != "planned":
                return "kept"
            full = dict(item)
            if current is None:
                full.update(attempts=0, nextAttemptAt=item["dueAt"])
                cond, names, values = "attribute_not_exists(pk)", {}, {}
            else:
                # SQLite's rule: a touch never attempted takes the new send time; a retried one keeps the later.
                attempts, before = int(current.get("attempts", 0)), int(current["nextAttemptAt"])
                full.update(
                    attempts=attempts, nextAttemptAt=item["dueAt"] if attempts == 0 else max(before, item["dueAt"])
                )
                cond = "#s = :planned AND #a = :a AND #t = :t"
                names = {"#s": "state", "#a": "attempts", "#t": "nextAttemptAt"}
                values = {":planned": {"S": "planned"}, ":a": {"N": str(attempts)}, ":t": {"N": str(before)}}
            if full["state"] == "planned":
                full.update(duePk=full["programId"], dueSk=f"{_ord(full['nextAttemptAt'])}#{full['touchKey']}")
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "ConditionExpression": cond,
                "Item": {
                    **_touch_pk(item["touchKey"]),
                    **{k: _SER.serialize(v) for k, v in full.items() if v is not None},
                },
            }
            if names:
                request.update(ExpressionAttributeNames=names, ExpressionAttributeValues=values)
            try:
                client.put_item(**request)
                return "inserted" if current is None else "replaced"
            except ClientError as err:
                if _code(err) != "ConditionalCheckFailedException":
                    raise
            raw = self._get(item["touchKey"])  # it changed under us (a claim, another re-plan): look again
            current = None if raw is None else _item(raw)
        raise RuntimeError(f"touch {key_hash(item['touchKey'])}: plan write kept conflicting; re-running is safe")

    def _remove_unplanned(self, program_id: str, partition_key: str, plan_keys: set[str]) -> int:
        """Delete the partition's planned touches the new plan no longer has (conditional: still planned)."""
        stale = [
            item["pk"]["S"]
            for item in self._query(
                IndexName=PROG,
                KeyConditionExpression="progPk = :p AND begins_with(progSk, :part)",
                FilterExpression="#s = :planned AND #part = :pk",
                ExpressionAttributeNames={"#s": "state", "#part": "partitionKey"},
                ExpressionAttributeValues={
                    ":p": {"S": program_id},
                    ":part": {"S": f"{partition_key}#"},
                    ":planned": {"S": "planned"},
                    ":pk": {"S": partition_key},
                },
            )
            if item["pk"]["S"][2:] not in plan_keys
        ]

        def delete(pk: str) -> bool:
            try:
                self.client().delete_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": pk}, "sk": {"S": "T"}},
                    ConditionExpression="#s = :planned",
                    ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={":planned": {"S": "planned"}},
                )
                return True
            except ClientError as err:
                if _code(err) == "ConditionalCheckFailedException":
                    return False  # claimed meanwhile: it stays, as in SQLite
                raise

        return sum(self._map(delete, stale))

    # -- reading ---------------------------------------------------------------------------------------------------
    def _index_pages(self, index: str, program_id: str, below: str, page_size: int) -> Iterator[list[LedgerRow]]:
        """Pages of a sparse index's items of the program with sort key < `below`, in order (keyset paging: each
        page resumes after the last key of the one before, so memory is one page)."""
        pk, sk = f"{index}Pk", f"{index}Sk"
        start: dict[str, Any] | None = None
        while True:
            page: list[LedgerRow] = []
            while len(page) < page_size:  # a Query stops at 1 MB: fill the page from the next one
                kwargs: dict[str, Any] = dict(
                    IndexName=index,
                    KeyConditionExpression=f"{pk} = :p AND {sk} < :below",
                    ExpressionAttributeValues={":p": {"S": program_id}, ":below": {"S": below}},
                    Limit=page_size - len(page),
                )
                if start is not None:
                    kwargs["ExclusiveStartKey"] = start
                response = self.client().query(TableName=self.table_name, **kwargs)
                page += [_row(i) for i in response.get("Items", [])]
                start = response.get("LastEvaluatedKey")
                if start is None:
                    break
            if page:
                yield self._remember(page)
            if start is None:
                return

    def due(self, program_id: str, now: int, page_size: int = 500) -> Iterator[list[LedgerRow]]:
        """Pages of touches in `planned` with next_attempt_at <= now, oldest first (the `due` index)."""
        return self._index_pages(DUE, program_id, _ord(now + 1), page_size)

    def in_doubt(self, program_id: str, claimed_before: int, page_size: int = 500) -> Iterator[list[LedgerRow]]:
        """Pages of touches left in `sending` whose claim is older than `claimed_before`, oldest claim first."""
        return self._index_pages(DOUBT, program_id, _ord(claimed_before + 1), page_size)

    def get(self, touch_key: str) -> LedgerRow | None:
        raw = self._get(touch_key)
        return None if raw is None else _row(raw)

    def _due_edge(self, program_id: str, below: str | None, last: bool) -> int | None:
        cond, values = "duePk = :p", {":p": {"S": program_id}}
        if below is not None:
            cond += " AND dueSk < :below"
            values[":below"] = {"S": below}
        items = (
            self.client()
            .query(
                TableName=self.table_name,
                IndexName=DUE,
                KeyConditionExpression=cond,
                ExpressionAttributeValues=values,
                ScanIndexForward=not last,
                Limit=1,
                ProjectionExpression="dueSk",
            )
            .get("Items", [])
        )
        return _unord(items[0]["dueSk"]["S"]) if items else None

    def due_summary(self, program_id: str, now: int) -> tuple[int, int | None]:
        """(number of due touches, latest next_attempt_at among them): what the due-touch sensor keys runs on."""
        below, n = _ord(now + 1), 0
        kwargs: dict[str, Any] = dict(
            TableName=self.table_name,
            IndexName=DUE,
            Select="COUNT",
            KeyConditionExpression="duePk = :p AND dueSk < :below",
            ExpressionAttributeValues={":p": {"S": program_id}, ":below": {"S": below}},
        )
        while True:
            response = self.client().query(**kwargs)
            n += response.get("Count", 0)
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return n, (self._due_edge(program_id, below, last=True) if n else None)

    def next_due_at(self, program_id: str) -> int | None:
        return self._due_edge(program_id, None, last=False)

    def counts(self, program_id: str | None = None) -> dict[tuple[str, str, str, str | None], int]:
        """{(programId, channel, state, reason): n} over the whole ledger (or one program): a Query of `prog` per
        program (the programs from their registry items: no Scan)."""
        programs = (
            [program_id]
            if program_id is not None
            else [
                i["sk"]["S"]
                for i in self._query(
                    KeyConditionExpression="pk = :p",
                    ConsistentRead=True,
                    ExpressionAttributeValues={":p": {"S": _PROGRAMS}},
                )
            ]
        )
        out: Counter = Counter()
        for p in programs:
            for raw in self._query(
                IndexName=PROG,
                KeyConditionExpression="progPk = :p",
                ProjectionExpression="#c, #s, #r",
                ExpressionAttributeNames={"#c": "channel", "#s": "state", "#r": "reason"},
                ExpressionAttributeValues={":p": {"S": p}},
            ):
                d = _item(raw)
                out[(p, d["channel"], d["state"], d.get("reason"))] += 1
        return dict(out)

    # -- contact pressure ------------------------------------------------------------------------------------------
    def _load_contacts(self, txn: DynamoDbLedgerTransaction, customer_ids: Iterable[str]) -> None:
        wanted = [c for c in dict.fromkeys(customer_ids) if c not in txn.customers]
        for c in wanted:
            txn.customers[c] = _Contacts(0, {})
        for raw in self._get_many([_customer_pk(c) for c in wanted]):
            d = _item(raw)
            txn.customers[d["pk"][2:]] = _Contacts(int(d.get("version", 0)), dict(d.get("contacts", {})))

    def contacts_since(
        self, conn: DynamoDbLedgerTransaction | None, customer_ids: Iterable[str], since: int
    ) -> list[tuple[str, str, str, str, int]]:
        """(customer_id, program_id, subject_id, channel, claimed_at) of touches claimed or sent since `since`,
        from the customers' contact items (strongly consistent), remembered in `conn` for the claims."""
        txn = conn if isinstance(conn, DynamoDbLedgerTransaction) else DynamoDbLedgerTransaction()
        ids = list(dict.fromkeys(customer_ids))
        self._load_contacts(txn, ids)
        txn.since = since if txn.since is None else min(txn.since, since)
        return [(c, p, s, ch, at) for c in ids for p, s, ch, at in txn.customers[c].entries.values() if at >= since]

    def _drop_contact(self, touch: dict[str, Any], claimed_at: int | None = None) -> None:
        """After a touch left sending for failed/planned/suppressed: remove its contact entry (or, with
        `claimed_at`, move it: a reclaim).  Only where the entry exists: an erased customer stays erased."""
        key = touch["touchKey"]
        u = _Update(_customer_pk(touch["customerId"])).where_exists("contacts", key)
        if claimed_at is None:
            u.remove_path(("contacts", key))
        else:
            u.set_path(("contacts", key), [touch["programId"], touch["subjectId"], touch["channel"], claimed_at])
        self._update(u)

    # -- erasure ---------------------------------------------------------------------------------------------------
    def erase_customer(self, customer_id: str) -> int:
        """GDPR erasure: remove every touch of the customer (and its contact item)."""
        return self.erase_customers([customer_id])

    def erase_customers(self, customer_ids: Iterable[str]) -> int:
        def erase(customer_id: str) -> int:
            client, n = self.client(), 0
            for item in self._query(
                IndexName=CUST,
                KeyConditionExpression="custPk = :c",
                ExpressionAttributeValues={":c": {"S": customer_id}},
            ):
                old = client.delete_item(
                    TableName=self.table_name, Key={"pk": item["pk"], "sk": item["sk"]}, ReturnValues="ALL_OLD"
                )
                n += "Attributes" in old
            client.delete_item(TableName=self.table_name, Key=_customer_pk(customer_id))
            return n

        return sum(self._map(erase, list(dict.fromkeys(customer_ids))))

    # -- suppression list ------------------------------------------------------------------------------------------
    def add_suppression(self, channel: str, address: str, reason: str, now: int) -> None:
        """Put an address on the suppression list (bounce, complaint, invalid address); first reason wins."""
        try:
            self.client().put_item(
                TableName=self.table_name,
                ConditionExpression="attribute_not_exists(pk)",
                Item={
                    "pk": {"S": f"S#{channel}#{address_hash(address)}"},
                    "sk": {"S": "S"},
                    "reason": {"S": reason},
                    "createdAt": {"N": str(int(now))},
                },
            )
        except ClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise

    def suppressed_addresses(self, conn: Any, channel: str, addresses: Iterable[str]) -> dict[str, str]:
        """{address_hash: reason} of the given addresses that are on the channel's suppression list."""
        prefix = f"S#{channel}#"
        keys = [{"pk": {"S": prefix + h}, "sk": {"S": "S"}} for h in {address_hash(a) for a in addresses}]
        return {raw["pk"]["S"][len(prefix) :]: raw["reason"]["S"] for raw in self._get_many(keys)}

    # -- transitions -----------------------------------------------------------------------------------------------
    def _sending(self, touch_key: str, token: str) -> _Update:
        return _Update(_touch_pk(touch_key)).where(state="sending", claimToken=token)

    def claim(self, conn: DynamoDbLedgerTransaction | None, touch_key: str, token: str, now: int) -> bool:
        """planned → sending with our token, and the customer's contact item version unchanged since `conn` read it
        (CLAIM RULE); False if another process claimed the touch, or any touch of the customer, first."""
        txn = conn if isinstance(conn, DynamoDbLedgerTransaction) else DynamoDbLedgerTransaction()
        ident = self._seen.get(touch_key)
        if ident is None:  # not from the last page: read it
            raw = self._get(touch_key)
            if raw is None or (d := _item(raw))["state"] != "planned":
                return False
            ident = (d["customerId"], d["programId"], d["subjectId"], d["channel"])
        customer_id, program_id, subject_id, channel = ident
        self._load_contacts(txn, [customer_id])
        contacts = txn.customers[customer_id]
        if contacts.stale:
            return False
        entry = [program_id, subject_id, channel, now]
        touch = _leave_planned(_Update(_touch_pk(touch_key)).where(state="planned", customerId=customer_id))
        touch.set(
            state="sending", claimToken=token, claimedAt=now, updatedAt=now, doubtSk=f"{_ord(now)}#{touch_key}"
        ).copy("doubtPk", "programId").increment("attempts")
        customer = _Update(_customer_pk(customer_id)).set(version=contacts.version + 1)
        horizon = min(txn.since if txn.since is not None else now, now - CONTACT_RETENTION_S)
        pruned = [k for k, e in contacts.entries.items() if e[3] < horizon and k != touch_key][:_PRUNE_PER_CLAIM]
        if contacts.version == 0:
            customer.where(pk=None).set(contacts={touch_key: entry})
        else:
            customer.where(version=contacts.version).set_path(("contacts", touch_key), entry)
            for k in pruned:
                customer.remove_path(("contacts", k))
        codes = self._transact([touch, customer])
        if codes is None:
            contacts.version += 1
            contacts.entries[touch_key] = entry
            for k in pruned:
                contacts.entries.pop(k, None)
            return True
        if codes[1] == "ConditionalCheckFailed":
            contacts.stale = True
            log.info(
                "touch %s left planned: another run claimed for the same customer since the pressure check",
                key_hash(touch_key),
            )
        return False

    def reclaim(self, touch_key: str, old_token: str | None, token: str, now: int) -> bool:
        """Take over an in-doubt claim (sending with `old_token`) for the recovery rule."""
        u = _Update(_touch_pk(touch_key)).where(state="sending", claimToken=old_token)
        u.set(claimToken=token, claimedAt=now, updatedAt=now, doubtSk=f"{_ord(now)}#{touch_key}")
        new = self._update(u, returns=True)
        if new is not None:
            self._drop_contact(new, claimed_at=now)
        return new is not None

    def suppress(self, conn: Any, touch_key: str, reason: str, now: int, token: str | None = None) -> bool:
        """planned (or our claimed touch) → suppressed with a reason."""
        if token is not None:
            return self._end_claim(
                self._sending(touch_key, token).set(state="suppressed", reason=reason, updatedAt=now)
            )
        u = _leave_planned(_Update(_touch_pk(touch_key)).where(state="planned"))
        return self._update(u.set(state="suppressed", reason=reason, updatedAt=now)) is not None

    def defer(self, conn: Any, touch_key: str, until: int, reason: str, now: int) -> bool:
        """Keep a planned touch planned but not due before `until` (quiet hours, channel outage)."""
        u = _due(_Update(_touch_pk(touch_key)).where(state="planned"), touch_key, until)
        return self._update(u.set(reason=reason, updatedAt=now)) is not None

    def mark_sent(self, touch_key: str, token: str, provider_id: str, now: int, reason: str | None = None) -> bool:
        u = _leave_sending(self._sending(touch_key, token))
        return (
            self._update(u.set(state="sent", providerId=provider_id, sentAt=now, reason=reason, updatedAt=now))
            is not None
        )

    def mark_sent_many(self, marks: Iterable[tuple[str, str, str | None]], token: str, now: int) -> int:
        """`mark_sent` for many (touch_key, provider_id, reason), `write_concurrency` at a time (no conditional
        batch write exists); returns how many were marked."""
        return sum(self._map(lambda m: self.mark_sent(m[0], token, m[1], now, reason=m[2]), list(marks)))

    def mark_failed(self, touch_key: str, token: str, reason: str, now: int) -> bool:
        return self._end_claim(self._sending(touch_key, token).set(state="failed", reason=reason, updatedAt=now))

    def mark_retry(self, touch_key: str, token: str, reason: str, next_attempt_at: int, now: int) -> bool:
        """sending → planned, due again at `next_attempt_at` (transient error or outage; attempts stay counted)."""
        u = _due(self._sending(touch_key, token), touch_key, next_attempt_at).copy("duePk", "programId")
        return self._end_claim(u.set(state="planned", reason=reason, claimToken=None, claimedAt=None, updatedAt=now))

    def _end_claim(self, u: _Update) -> bool:
        """sending → failed / planned / suppressed: the touch no longer counts as a contact (as in SQLite, where
        only sending and sent count), so its entry leaves the customer item after the touch update."""
        new = self._update(_leave_sending(u), returns=True)
        if new is not None:
            self._drop_contact(new)
        return new is not None
