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
  suppression   pk = S#<channel>#k:<HMAC-SHA256 of the address>   sk = S   reason, createdAt (never the raw address;
                                                  version-1 items without `k:` migrate: dynamodb_suppression)
  program       pk = PROGRAMS            sk = <programId>   (the programs `counts()` walks without a Scan)

Sparse GSIs on touches (an item without the index's key attributes is not in the index):

  due    duePk = programId, dueSk = <nextAttemptAt>#touchKey   only while state = planned     projection ALL
  doubt  doubtPk = programId, doubtSk = <claimedAt>#touchKey   only while state = sending     projection ALL
  prog   progPk = programId, progSk = partitionKey#touchKey    every touch; INCLUDE channel, state, reason,
                                                               partitionKey (counts, a re-plan's removals)
  cust   custPk = customerId                                   every touch; KEYS_ONLY (erasure)
  prov   provPk = providerId                                   only once sent with a provider id; KEYS_ONLY
                                                               (outcome webhooks: `dynamodb_sent`)

<nextAttemptAt>/<claimedAt> are the integer as a fixed-width decimal (offset by 2^62, 20 digits), so string order
is numeric order and ties go by touch key, as in SQLite.  `due`/`in_doubt` are Query only, keyset-paged with
ExclusiveStartKey: memory stays one page.  Transitions and the CLAIM RULE (how a claim stays within the caps
across processes) are in `resources.delivery_ledger.dynamodb_claims`; the items in `dynamodb_items`.

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

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from resources.delivery_ledger.base import (
    PLAN_COLUMNS,
    LedgerRow,
    PlanResult,
    check_plan,
    key_hash,
    plan_each_partition,
)
from resources.delivery_ledger.dynamodb_claims import DynamoDbLedgerClaims
from resources.delivery_ledger.dynamodb_items import (
    CUST,
    DOUBT,
    DUE,
    PROG,
    PROGRAMS,
    PROV,
    DynamoDbLedgerTransaction,
    customer_pk,
    plan_item,
    to_row,
    touch_pk,
)
from resources.delivery_ledger.dynamodb_sent import DynamoDbSentTouches
from resources.delivery_ledger.dynamodb_suppression import DynamoDbSuppressionList
from resources.delivery_ledger.suppression import SuppressionHashes
from resources.dynamodb import (
    conditional_write,
    from_sortable_int,
    gsi,
    plain_item,
    query_count,
    query_pages,
    serialize,
    sortable_int,
)


class DynamoDbDeliveryLedger(DynamoDbLedgerClaims, DynamoDbSentTouches, DynamoDbSuppressionList):
    """The delivery ledger on one DynamoDB table (see the module docstring).  Thread-safe: boto3 clients are.
    Arguments as `DynamoDbTable`'s: table_name, client_factory, region_name, endpoint_url, max_attempts,
    write_concurrency, conflict_retries; and `suppression_key`, the suppression list's HMAC key (None: the
    settings' key, read on first use)."""

    def __init__(self, *args: Any, suppression_key: bytes | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.hashes = SuppressionHashes(suppression_key)

    def create_table(self) -> None:
        """Create the table with its five GSIs (pay per request); an existing table is left as is."""
        self.ensure_table(
            ("pk", "sk", "duePk", "dueSk", "doubtPk", "doubtSk", "progPk", "progSk", "custPk", "provPk"),
            [
                gsi(DUE, "duePk", "dueSk", {"ProjectionType": "ALL"}),
                gsi(DOUBT, "doubtPk", "doubtSk", {"ProjectionType": "ALL"}),
                gsi(
                    PROG,
                    "progPk",
                    "progSk",
                    {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["channel", "state", "reason", "partitionKey"]},
                ),
                gsi(CUST, "custPk", None, {"ProjectionType": "KEYS_ONLY"}),
                gsi(PROV, "provPk", None, {"ProjectionType": "KEYS_ONLY"}),
            ],
        )

    @contextmanager
    def transaction(self) -> Iterator[DynamoDbLedgerTransaction]:
        """The scope of one page's pressure read and claims.  Writes are not deferred: each is its own conditional
        write, and the claims are conditional on what the pressure read saw (CLAIM RULE)."""
        yield DynamoDbLedgerTransaction()

    # -- planning --------------------------------------------------------------------------------------------------
    def plan(self, table: pa.Table, program_id: str, partition_key: str, now: int) -> PlanResult:
        """Insert a partition's touch plan; re-planning replaces only touches still `planned` and never un-sends
        (the same rules and counts as `DeliveryLedger.plan`)."""
        check_plan(table)
        outcomes: Counter[str] = Counter()
        held = 0
        plan_keys: set[str] = set()
        for batch in table.select(list(PLAN_COLUMNS)).to_batches(max_chunksize=1_000):
            items = []
            for r in batch.to_pylist():
                if r["programId"] != program_id or r["partitionKey"] != partition_key:
                    raise ValueError("touch plan row belongs to another program or partition")
                items.append(plan_item(r, now))
                held += items[-1]["state"] == "suppressed"
                plan_keys.add(r["touchKey"])
            keys = list({i["touchKey"]: touch_pk(i["touchKey"]) for i in items}.values())
            current = {(d := plain_item(raw))["touchKey"]: d for raw in self.get_items(keys)}
            outcomes.update(self.parallel(self._put_planned, [(i, current.get(i["touchKey"])) for i in items]))
        self.client().put_item(TableName=self.table_name, Item={"pk": {"S": PROGRAMS}, "sk": {"S": program_id}})
        removed = self._remove_unplanned(program_id, partition_key, plan_keys)
        return PlanResult(outcomes["inserted"], outcomes["replaced"], removed, outcomes["kept"], held)

    def plan_partitions(self, table: pa.Table, program_id: str, now: int) -> PlanResult:
        """`plan` for every partition in the table's `partitionKey` column (DynamoDB has no multi-partition
        transaction worth its cost here: each partition's writes are conditional and idempotent on their own)."""
        return plan_each_partition(self, table, program_id, now)

    def _put_planned(self, job: tuple[dict[str, Any], dict[str, Any] | None]) -> str:
        """Write one plan row: "inserted" (new), "replaced" (was still planned) or "kept" (past planned).  A write
        whose condition fails (a claim, another re-plan got there first) reads the touch again and decides again:
        an optimistic read-modify-write, not a backoff (nothing was throttled).  `job`: (item, the touch read)."""
        item, current = job
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
                full.update(duePk=full["programId"], dueSk=f"{sortable_int(full['nextAttemptAt'])}#{full['touchKey']}")
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "ConditionExpression": cond,
                "Item": {**touch_pk(item["touchKey"]), **{k: serialize(v) for k, v in full.items() if v is not None}},
            }
            if names:
                request.update(ExpressionAttributeNames=names, ExpressionAttributeValues=values)
            if conditional_write(self.client().put_item, **request) is not None:
                return "inserted" if current is None else "replaced"
            raw = self._get(item["touchKey"])  # it changed under us (a claim, another re-plan): look again
            current = None if raw is None else plain_item(raw)
        raise RuntimeError(f"touch {key_hash(item['touchKey'])}: plan write kept conflicting; re-running is safe")

    def _planned_in(self, program_id: str, partition_key: str) -> list[str]:
        """The item pks (`T#<touchKey>`) of the partition's touches in `planned` (the `prog` index)."""
        return [
            item["pk"]["S"]
            for item in self.query_items(
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
        ]

    def _remove_unplanned(self, program_id: str, partition_key: str, plan_keys: set[str]) -> int:
        """Delete the partition's planned touches the new plan no longer has (conditional: still planned)."""
        stale = [pk for pk in self._planned_in(program_id, partition_key) if pk[2:] not in plan_keys]

        def delete(pk: str) -> bool:
            # A touch claimed meanwhile fails the condition and stays, as in SQLite.
            deleted = conditional_write(
                self.client().delete_item,
                TableName=self.table_name,
                Key={"pk": {"S": pk}, "sk": {"S": "T"}},
                ConditionExpression="#s = :planned",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":planned": {"S": "planned"}},
            )
            return deleted is not None

        return sum(self.parallel(delete, stale))

    # -- partitions ------------------------------------------------------------------------------------------------
    def partition_subjects(self, program_id: str, start: str, end: str) -> dict[str, tuple[str, str]]:
        """{partition_key: (customer_id, subject_id)} of the program's partitions with start <= key < end: a Query
        of `prog` over the range, then one touch per partition read (the index does not project those two)."""
        if start >= end:
            return {}
        first: dict[str, str] = {}
        for raw in self.query_items(
            IndexName=PROG,
            KeyConditionExpression="progPk = :p AND progSk BETWEEN :start AND :end",
            ProjectionExpression="pk, partitionKey",
            ExpressionAttributeValues={":p": {"S": program_id}, ":start": {"S": start}, ":end": {"S": end}},
        ):
            part = raw["partitionKey"]["S"]
            if start <= part < end:
                first.setdefault(part, raw["pk"]["S"][2:])
        touches = [plain_item(raw) for raw in self.get_items([touch_pk(k) for k in first.values()])]
        return {t["partitionKey"]: (t["customerId"], t["subjectId"]) for t in touches}

    def suppress_planned(self, program_id: str, partition_keys: Iterable[str], reason: str, now: int) -> int:
        """The partitions' touches still `planned` → suppressed with `reason`, each a conditional update (`suppress`:
        a touch claimed meanwhile is left), `write_concurrency` at a time; how many changed."""
        found = self.parallel(lambda p: self._planned_in(program_id, p), list(dict.fromkeys(partition_keys)))
        keys = [pk[2:] for pks in found for pk in pks]
        return sum(self.parallel(lambda k: self.suppress(None, k, reason, now), keys))

    # -- reading ---------------------------------------------------------------------------------------------------
    def _index_pages(self, index: str, program_id: str, below: str, page_size: int) -> Iterator[list[LedgerRow]]:
        """Pages of a sparse index's items of the program with sort key < `below`, in order (keyset paging: each
        page resumes after the last key of the one before, so memory is one page)."""
        pk, sk = f"{index}Pk", f"{index}Sk"
        for raw in query_pages(
            self.client(),
            page_size,
            TableName=self.table_name,
            IndexName=index,
            KeyConditionExpression=f"{pk} = :p AND {sk} < :below",
            ExpressionAttributeValues={":p": {"S": program_id}, ":below": {"S": below}},
        ):
            yield self._remember([to_row(i) for i in raw])

    def due(self, program_id: str, now: int, page_size: int = 500) -> Iterator[list[LedgerRow]]:
        """Pages of touches in `planned` with next_attempt_at <= now, oldest first (the `due` index)."""
        return self._index_pages(DUE, program_id, sortable_int(now + 1), page_size)

    def in_doubt(self, program_id: str, claimed_before: int, page_size: int = 500) -> Iterator[list[LedgerRow]]:
        """Pages of touches left in `sending` whose claim is older than `claimed_before`, oldest claim first."""
        return self._index_pages(DOUBT, program_id, sortable_int(claimed_before + 1), page_size)

    def get(self, touch_key: str) -> LedgerRow | None:
        """One touch (strongly consistent), or None."""
        raw = self._get(touch_key)
        return None if raw is None else to_row(raw)

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
        return from_sortable_int(items[0]["dueSk"]["S"]) if items else None

    def due_summary(self, program_id: str, now: int) -> tuple[int, int | None]:
        """(number of due touches, latest next_attempt_at among them): what the due-touch sensor keys runs on."""
        below = sortable_int(now + 1)
        n = query_count(
            self.client(),
            TableName=self.table_name,
            IndexName=DUE,
            KeyConditionExpression="duePk = :p AND dueSk < :below",
            ExpressionAttributeValues={":p": {"S": program_id}, ":below": {"S": below}},
        )
        return n, (self._due_edge(program_id, below, last=True) if n else None)

    def next_due_at(self, program_id: str) -> int | None:
        """The earliest next_attempt_at of a planned touch of the program, or None."""
        return self._due_edge(program_id, None, last=False)

    def counts(self, program_id: str | None = None) -> dict[tuple[str, str, str, str | None], int]:
        """{(programId, channel, state, reason): n} over the whole ledger (or one program): a Query of `prog` per
        program (the programs from their registry items: no Scan)."""
        programs = (
            [program_id]
            if program_id is not None
            else [
                i["sk"]["S"]
                for i in self.query_items(
                    KeyConditionExpression="pk = :p",
                    ConsistentRead=True,
                    ExpressionAttributeValues={":p": {"S": PROGRAMS}},
                )
            ]
        )
        out: Counter[tuple[str, str, str, str | None]] = Counter()
        for p in programs:
            for raw in self.query_items(
                IndexName=PROG,
                KeyConditionExpression="progPk = :p",
                ProjectionExpression="#c, #s, #r",
                ExpressionAttributeNames={"#c": "channel", "#s": "state", "#r": "reason"},
                ExpressionAttributeValues={":p": {"S": p}},
            ):
                d = plain_item(raw)
                out[(p, d["channel"], d["state"], d.get("reason"))] += 1
        return dict(out)

    # -- erasure ---------------------------------------------------------------------------------------------------
    def erase_customer(self, customer_id: str) -> int:
        """GDPR erasure: remove every touch of the customer (and its contact item)."""
        return self.erase_customers([customer_id])

    def erase_customers(self, customer_ids: Iterable[str]) -> int:
        """`erase_customer` for several, `write_concurrency` customers at a time; how many touches were removed."""

        def erase(customer_id: str) -> int:
            client, n = self.client(), 0
            for item in self.query_items(
                IndexName=CUST,
                KeyConditionExpression="custPk = :c",
                ExpressionAttributeValues={":c": {"S": customer_id}},
            ):
                old = client.delete_item(
                    TableName=self.table_name, Key={"pk": item["pk"], "sk": item["sk"]}, ReturnValues="ALL_OLD"
                )
                n += "Attributes" in old
            client.delete_item(TableName=self.table_name, Key=customer_pk(customer_id))
            return n

        return sum(self.parallel(erase, list(dict.fromkeys(customer_ids))))
