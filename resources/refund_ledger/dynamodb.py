"""The refund ledger on one DynamoDB table: production (ENGAGE_ENV=prod), where run workers on several machines
issue refunds, credits and codes at once and a SQLite file cannot be shared.

Same interface (`base.RefundLedgerBackend`), return types and guarantees as `resources.refund_ledger.sqlite.RefundLedger` (read its docstring
first); this docstring says only how the table holds it and where DynamoDB forces a different mechanism.  The
plumbing (client, batch reads, conditional updates, transactions and their retries) is `resources.dynamodb`'s; the
keys and values are built in `resources.refund_ledger.dynamodb_keys`, the shared rules are in `base`.

Items (every key a String; `pk`/`sk` the table key; <p>, <c>, <s> the program, customer and subject ids with '%'
and '#' escaped as %25 and %23, so key parts never run into each other):

  issuance   pk = K#<p>#<c>#<s>   sk = refund | credit   programId, partitionKey, customerId, subjectId, kind,
                                                       refundType, amount, currency, amountUsd, code (credits),
                                                       state, createdAt, decidedAt, decidedBy
  code       pk = K#<p>#<c>#<s>   sk = code              code, programId, customerId, subjectId, partitionKey,
                                                       createdAt: the candidate's discount code
  code name  pk = CODE#<code>     sk = CODE              programId, customerId, subjectId, partitionKey, createdAt:
                                                       the code taken (what makes codes unique)
  budget     pk = B#<p>#<partitionKey>   sk = B          spent (Number, USD): the partition's committed spend

A candidate's parts and code share one partition key, so `issued`, `states` and the re-run check read them with
one BatchGetItem (strongly consistent).  An issuance's id is its key: `<p>#<c>#<s>#<kind>` (approve/reject need no
lookup; SQLite's ids are random).

Sparse GSI `queue`: queuePk = programId, queueSk = <createdAt>#<issuance id> (createdAt a fixed-width decimal, so
string order is time order), present only while state = pending_approval; INCLUDE projection of what `pending`
returns.  `pending` is a Query of it, oldest first.
Sparse GSI `outbox`: outboxPk = programId, outboxSk = <issued or approved at>#<issuance id>, present while a
processed issuance's event is unacknowledged (`unpublished`, `mark_published`: `resources.refund_events`).

BUDGET RULE (never over budget across workers).  SQLite sums the partition's rows inside BEGIN IMMEDIATE.  Here
the budget item holds the sum: a candidate is issued by ONE TransactWriteItems of
  - each part (refund, credit): a new item, condition attribute_not_exists(pk), and
  - the budget item: SET spent = spent + cost, condition spent <= budget - cost (DynamoDB conditions have no
    arithmetic, so the limit is computed here; an absent item is spent 0),
so either the parts exist and their cost is in `spent`, or neither.  A failed part condition is an earlier
issuance (`already_issued`), a failed budget condition `over_budget`.  A rejection is one transaction too: the
issuance pending_approval → rejected AND spent - its amountUsd.  Amounts are Decimals (exact cents).  Before
writing, `issue` reads the chunk's parts, codes and the budget item (consistent) and refuses locally what cannot
fit, so a spent budget costs no writes; the transactions then run one at a time, best score first (they all
update the one budget item: parallel ones would only conflict).

CODE RULE.  A candidate without a code gets one drawn with `base.new_code` and written by one TransactWriteItems
of its code item (attribute_not_exists: another worker may have given it one meanwhile, which is then read and
kept) and the code name item (attribute_not_exists: a collision draws again, at most MAX_CODE_DRAWS times).  An
issuing candidate gets its code before its issuance transaction; should the budget then refuse it (a race with
another worker), the code stays the candidate's, as codes that `issue_codes` gives out for templates do.

Differences that follow from DynamoDB:
- The `queue` GSI is eventually consistent: `pending` may miss an issuance queued, or still list one decided,
  within about a second; `approve`/`reject` are conditional on the item's state, so a decision stays final.
- Concurrent workers issuing the SAME partition interleave their candidates: each stays within the budget, but the
  last ones that fit are not strictly best score first across workers (within one worker they are).
- Transactions that meet another on the same item (TransactionConflict) are retried with jitter; a run that still
  conflicts raises, and re-running it is safe.

Costs (on-demand): `issue` reads 3 items per candidate (BatchGetItem, consistent: 1 read unit each); a new code is
a 2-item transaction (4 write units); an issued candidate a 2- or 3-item transaction (2 write units per item, plus
1 for the queue index when it waits for approval), about 10-30 ms each, serial per worker: the proactive-refunds
budget ($400k a day at $100 a candidate) is about 4,000 transactions, one to two minutes.  `approve` is 1 write
unit (+1 index), `reject` a 2-item transaction; `states` reads 2 items per key; `pending` reads the index
(eventually consistent, about 4 KB per half read unit).
No names, e-mails or phone numbers are stored, and no log line or error names a customer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa

from engage_assets.domain.config import ProgramConfig
from resources.dynamodb import (
    RETRYABLE_CANCELLATIONS,
    DynamoDbTable,
    Update,
    add_missing_indexes,
    deserialize,
    gsi,
    sortable_int,
)
from resources.refund_ledger import base
from resources.refund_ledger.base import (
    MAX_CODE_DRAWS,
    IssueResult,
    Offer,
    candidate_ids,
    candidate_state,
    plan_rows,
    ranked_offers,
    subject_key,
)
from resources.refund_ledger.dynamodb_keys import (
    CODE_SK,
    ISSUED_ATTRS,
    KINDS,
    OUTBOX,
    PENDING_ATTRS,
    QUEUE,
    budget_key,
    candidate_key,
    candidate_part,
    code_name_key,
    committed,
    issuance_key,
    item_key,
    item_values,
    money,
    offer_cost,
)
from resources.refund_ledger.dynamodb_outbox import enroll_legacy_issuances

_SETTLED = RETRYABLE_CANCELLATIONS | {"None"}  # codes of a transaction only conflicts cancelled


class DynamoDbRefundLedger(DynamoDbTable):
    """Refunds, credits and codes issued, per program and partition, on one DynamoDB table (see the module
    docstring).  Arguments as `DynamoDbTable`'s: table_name, client_factory, region_name, endpoint_url,
    max_attempts, write_concurrency (parallel code draws), conflict_retries."""

    def create_table(self) -> None:
        """Create the table with its approval-queue and outbox GSIs (pay per request); an existing table gets the
        indexes it lacks, and its issuances from before the outbox are enrolled in it (`dynamodb_outbox`)."""
        projection = {"ProjectionType": "INCLUDE", "NonKeyAttributes": [attr for _, attr in PENDING_ATTRS]}
        indexes = [gsi(QUEUE, "queuePk", "queueSk", projection), gsi(OUTBOX, "outboxPk", "outboxSk", projection)]
        attributes = ("pk", "sk", "queuePk", "queueSk", "outboxPk", "outboxSk")
        self.ensure_table(attributes, indexes)
        add_missing_indexes(self.client(), self.table_name, dict.fromkeys(attributes, "S"), indexes)
        enroll_legacy_issuances(self)

    # -- refunds and credits ------------------------------------------------------------------------------------------
    def issue(
        self,
        program: ProgramConfig,
        plan: pa.Table | Iterable[Mapping[str, Any]],
        partition_key: str,
        now: int | None = None,
        chunk: int = 500,
    ) -> IssueResult:
        """Issue the refunds and credits of a refund program's candidates (plan rows: one per touch is fine, a
        candidate is issued once), best score first, never past the partition's budget (BUDGET RULE)."""
        if program.refundStrategy is None:
            raise ValueError(f"{program.programId} has no refundStrategy")
        now = int(now if now is not None else time.time())
        offers = ranked_offers(program, plan)
        result = IssueResult()
        for start in range(0, len(offers), chunk):
            self._issue_chunk(program, offers[start : start + chunk], partition_key, now, result)
        result.spent_usd = self.spent_usd(program.programId, partition_key)
        return result

    def _issue_chunk(
        self, program: ProgramConfig, offers: list[Offer], partition_key: str, now: int, result: IssueResult
    ) -> None:
        pid, budget = program.programId, money(program.budget.amount)
        keys = [candidate_key(pid, o.customer, o.subject, sk) for o in offers for sk in (*KINDS, CODE_SK)]
        issued: set[tuple[str, str]] = set()
        codes: dict[tuple[str, str], str] = {}
        spent = Decimal(0)
        for raw in self.get_items([*keys, budget_key(pid, partition_key)]):
            if raw["sk"]["S"] == "B":
                spent = deserialize(raw.get("spent", {"N": "0"}))
            elif raw["sk"]["S"] == CODE_SK:
                codes[(raw["customerId"]["S"], raw["subjectId"]["S"])] = raw["code"]["S"]
            else:
                issued.add((raw["customerId"]["S"], raw["subjectId"]["S"]))
        room, todo = budget - spent, []
        for o in offers:  # what cannot fit now is refused without a write (spent only grows, but by a rejection)
            if (o.customer, o.subject) in issued:
                result.already_issued += 1
            elif offer_cost(o) > room:
                result.over_budget += 1
                result.refused.append(subject_key(pid, o.customer, o.subject))
            else:
                room -= offer_cost(o)
                todo.append(o)
        missing = [(o.customer, o.subject) for o in todo if (o.customer, o.subject) not in codes]
        codes.update(
            zip(missing, self.parallel(lambda k: self._code(pid, k, partition_key, now), missing), strict=False)
        )
        for o in todo:
            outcome = self._issue_one(pid, o, partition_key, budget, codes[(o.customer, o.subject)], now)
            setattr(result, outcome, getattr(result, outcome) + 1)
            if outcome == "over_budget":
                result.refused.append(subject_key(pid, o.customer, o.subject))

    def _issue_one(
        self, program_id: str, offer: Offer, partition_key: str, budget: Decimal, code: str, now: int
    ) -> str:
        """One candidate's issuance transaction (BUDGET RULE): the IssueResult counter it adds to."""
        state = "pending_approval" if offer.approval else "processed"
        candidate = candidate_part(program_id, offer.customer, offer.subject)
        updates = []
        for part in offer.parts:
            u = (
                Update(candidate_key(program_id, offer.customer, offer.subject, part.kind))
                .where(pk=None)
                .set(
                    programId=program_id,
                    partitionKey=partition_key,
                    customerId=offer.customer,
                    subjectId=offer.subject,
                    kind=part.kind,
                    refundType=part.refund_type,
                    amount=money(part.amount),
                    currency=part.currency,
                    amountUsd=money(part.amount_usd),
                    state=state,
                    createdAt=now,
                    code=code if part.kind == "credit" else None,
                    decidedAt=None if offer.approval else now,
                )
            )
            if offer.approval:
                u.set(queuePk=program_id, queueSk=f"{sortable_int(now)}#{candidate}#{part.kind}")
            else:
                u.set(outboxPk=program_id, outboxSk=f"{sortable_int(now)}#{candidate}#{part.kind}")
            updates.append(u)
        updates.append(
            Update(budget_key(program_id, partition_key))
            .where_at_most("spent", budget - offer_cost(offer))
            .add("spent", offer_cost(offer))
        )
        codes = self.transact_updates(updates, self._conflict_attempts())
        if codes is None:
            return state
        if "ConditionalCheckFailed" in codes[:-1]:
            return "already_issued"  # another worker issued this candidate meanwhile
        if codes[-1] == "ConditionalCheckFailed":
            return "over_budget"  # another worker spent the room meanwhile
        if not set(codes) <= _SETTLED:
            committed(codes)  # raises
        raise RuntimeError("a refund issuance kept conflicting with other transactions; re-running is safe")

    def _conflict_attempts(self) -> int:
        """Attempts of a transaction on the budget item, which every worker of the partition updates: more than
        `DynamoDbTable`'s default, since conflicts there are expected, not exceptional."""
        return MAX_CODE_DRAWS * (self.conflict_retries + 1)

    def spent_usd(self, program_id: str, partition_key: str) -> float:
        """The partition's committed spend in USD (every state but rejected)."""
        raw = (
            self.client()
            .get_item(TableName=self.table_name, Key=budget_key(program_id, partition_key), ConsistentRead=True)
            .get("Item")
        )
        return round(item_values(raw).get("spent", 0.0), 2) if raw else 0.0

    # -- the approval queue -------------------------------------------------------------------------------------------
    def pending(self, program_id: str, limit: int = 1_000) -> list[dict[str, Any]]:
        """The approval queue, oldest first (ids, amounts and keys: no personal data); the `queue` index."""
        out: list[dict[str, Any]] = []
        if limit == 0:
            return out
        page = {"PageSize": min(limit, 1_000)} if limit > 0 else {}  # a negative limit: all, as in SQLite
        for raw in self.query_items(
            IndexName=QUEUE,
            KeyConditionExpression="queuePk = :p",
            ExpressionAttributeValues={":p": {"S": program_id}},
            PaginationConfig=page,
        ):
            d = item_values(raw)
            out.append({"issuance_id": f"{d['pk'][2:]}#{d['sk']}", **{c: d.get(a) for c, a in PENDING_ATTRS}})
            if len(out) == limit:
                break
        return out

    def unpublished(self, program_id: str, limit: int = 1_000) -> list[dict[str, Any]]:
        """Processed issuances whose event is not acknowledged yet, oldest first: the `outbox` index (eventually
        consistent: one issued a moment ago may wait for the next run, one just published may be listed again and
        is then published again under the same event id)."""
        out: list[dict[str, Any]] = []
        for raw in self.query_items(
            IndexName=OUTBOX,
            KeyConditionExpression="outboxPk = :p",
            ExpressionAttributeValues={":p": {"S": program_id}},
            PaginationConfig={"PageSize": max(1, min(limit, 1_000))},
        ):
            if len(out) >= limit:
                break
            d = item_values(raw)
            out.append({"issuance_id": f"{d['pk'][2:]}#{d['sk']}", **{c: d.get(a) for c, a in PENDING_ATTRS}})
        return out

    def mark_published(self, issuance_ids: Iterable[str], now: int | None = None) -> int:
        """issued → published: publishedAt set and the item out of the outbox, conditional on processed and not
        yet published (an already published one keeps its time)."""
        now = int(now if now is not None else time.time())
        keys = [k for i in dict.fromkeys(issuance_ids) if (k := issuance_key(i)) is not None]

        def mark(key: dict[str, Any]) -> bool:
            u = Update(key).where(state="processed", publishedAt=None).remove("outboxPk", "outboxSk")
            return self.update_item(u.set(publishedAt=now)) is not None

        return sum(self.parallel(mark, keys))

    def approve(self, issuance_ids: Iterable[str], approver: str, now: int | None = None) -> int:
        """Approve queued issuances (pending_approval → processed); how many were."""
        return self._decide(issuance_ids, "processed", approver, now)

    def reject(self, issuance_ids: Iterable[str], approver: str, now: int | None = None) -> int:
        """Reject queued issuances: their amount no longer counts against the budget."""
        return self._decide(issuance_ids, "rejected", approver, now)

    def _decide(self, issuance_ids: Iterable[str], state: str, approver: str, now: int | None) -> int:
        """pending_approval → state, conditional on the state (a decision is final); a rejection also gives its
        amount back to the budget item in the same transaction."""
        now = int(now if now is not None else time.time())
        keys = [k for i in dict.fromkeys(issuance_ids) if (k := issuance_key(i)) is not None]
        waiting = [d for raw in self.get_items(keys) if (d := item_values(raw))["state"] == "pending_approval"]

        def decide(d: dict[str, Any]) -> bool:
            u = Update(item_key(d["pk"], d["sk"])).where(state="pending_approval").remove("queuePk", "queueSk")
            u.set(state=state, decidedAt=now, decidedBy=approver)
            if state != "rejected":
                u.set(outboxPk=d["programId"], outboxSk=f"{sortable_int(now)}#{d['pk'][2:]}#{d['sk']}")
                return self.update_item(u) is not None
            refund = Update(budget_key(d["programId"], d["partitionKey"])).add("spent", -money(d["amountUsd"]))
            codes = self.transact_updates([u, refund], self._conflict_attempts())
            if codes is None or not set(codes) <= _SETTLED:
                return committed(codes)
            raise RuntimeError("a rejection kept conflicting with other transactions; re-running is safe")

        return sum(self.parallel(decide, waiting))

    def issued(self, program_id: str, customer_id: str, subject_id: str) -> list[dict[str, Any]]:
        """The candidate's issuances (kind, type, amounts, code, state), by kind."""
        parts = [
            item_values(raw)
            for raw in self.get_items([candidate_key(program_id, customer_id, subject_id, kind) for kind in KINDS])
        ]
        return [{c: d.get(a) for c, a in ISSUED_ATTRS} for d in sorted(parts, key=lambda d: d["kind"])]

    def states(self, program_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The state of each (customer, subject)'s issuance (as `RefundLedger.states`): one BatchGetItem per 50
        keys; keys never issued are absent."""
        seen: dict[tuple[str, str], set[str]] = {}
        for raw in self.get_items(
            [candidate_key(program_id, c, s, kind) for c, s in dict.fromkeys(keys) for kind in KINDS]
        ):
            seen.setdefault((raw["customerId"]["S"], raw["subjectId"]["S"]), set()).add(raw["state"]["S"])
        return {k: candidate_state(v) for k, v in seen.items()}

    # -- discount codes -----------------------------------------------------------------------------------------------
    def _code(self, program_id: str, key: tuple[str, str], partition_key: str | None, now: int) -> str:
        """The candidate's code, drawn now if it has none (CODE RULE)."""
        customer, subject = key
        attrs = dict(
            programId=program_id, customerId=customer, subjectId=subject, partitionKey=partition_key, createdAt=now
        )
        attrs = {k: v for k, v in attrs.items() if v is not None}
        for _ in range(MAX_CODE_DRAWS):
            code = base.new_code()  # through the module: one stand-in (tests) serves both ledgers
            codes = self.transact_updates(
                [
                    Update(candidate_key(program_id, customer, subject, CODE_SK))
                    .where(pk=None)
                    .set(code=code, **attrs),
                    Update(code_name_key(code)).where(pk=None).set(**attrs),
                ]
            )
            if committed(codes):
                return code
            if codes and codes[0] == "ConditionalCheckFailed":  # another worker gave it one meanwhile
                found = self.codes_for(program_id, [key]).get(key)
                if found:
                    return found
        raise RuntimeError("could not draw a unique discount code for a candidate")

    def issue_codes(
        self,
        program: ProgramConfig | str,
        rows: pa.Table | Iterable[Mapping[str, Any]],
        partition_key: str | None = None,
        now: int | None = None,
    ) -> dict[str, str]:
        """{subject_key(program, customer, subject): code} for these rows (plan rows, touches or offer rows);
        issued once per candidate, the same code on every later call.  Holdout rows get no code.  Missing codes
        are drawn `write_concurrency` at a time."""
        pid = program if isinstance(program, str) else program.programId
        now = int(now if now is not None else time.time())
        keys = list(dict.fromkeys(candidate_ids(r) for r in plan_rows(rows) if not r.get("holdout")))
        found = self.codes_for(pid, keys)
        missing = [k for k in keys if k not in found]
        found.update(
            zip(missing, self.parallel(lambda k: self._code(pid, k, partition_key, now), missing), strict=False)
        )
        return {subject_key(pid, c, s): found[(c, s)] for c, s in keys}

    def codes_for(self, program_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Codes already issued (read only; consistent)."""
        return {
            (raw["customerId"]["S"], raw["subjectId"]["S"]): raw["code"]["S"]
            for raw in self.get_items([candidate_key(program_id, c, s, CODE_SK) for c, s in dict.fromkeys(keys)])
        }
