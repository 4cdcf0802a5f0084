"""The abandoned-cart decision path: ONE code path for a single event and for a micro-batch of events.

`decide(program, events, parts, now)` runs, vectorised over the batch (an Arrow table of its CartAbandoned events):

1. state events first: `CartPurchased` marks its cart purchased in the cart state (`resources.cart_state`: the
   decision path and the delivery engine's `CartConversions` read it, so a later touch is suppressed `converted`);
   `InventoryChanged` records the product's stock there (the inventory filter reads it).  Neither creates a
   candidate.  A batch applies them before its abandonments: a cart purchased later in the same batch is filtered
   here (`eligibility`), where one-event-at-a-time processing would plan it and then suppress its touches;
2. de-duplication: copies of one key (`deduplication.keyFormat`) in the batch keep the earliest abandonment; the
   unique keys are claimed in the dedup store for `ttlDays` (`resources.dedup`).  A key already done is a duplicate
   (dropped); a key another consumer holds pending is `in_flight` (the handler hands it back to its queue);
3. enrichment (`context`): customer, payment method, features, cart status, stock, recovery messages of the last
   7 days.  A customer the warehouse does not know is quarantined `unknown_customer` (its claim released, so a
   replay after the warehouse learns the customer is decided afresh);
4. the program's `marketplaces` (a customer outside them, or of an unknown marketplace, is set aside under
   `marketplaces`, as the batch programs' source stage does), then its filter chain through
   `pipeline.apply_filter_chain`: the batch programs' compiled SQL, per-filter removed counts and reasons;
5. score, discount, holdout, candidate records, touch plan (`offers`); each candidate stored in its cart's partition
   (`replace_partition`: idempotent, one live candidate per customer and program, the newest cart winning) and its
   touches planned in the delivery ledger in the same partition (`plan`: idempotent, never un-sends);
6. the claims completed.  On an error every claim of the batch is released and the error propagates: the whole
   batch is retried, and every write above is idempotent.

Deciding a batch, or its events one at a time, leaves the same candidates and touches (the test suite checks it),
save for the state-event ordering of step 1.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain.bulk import collector_paused
from engage_assets.domain.config import ReactiveProgram
from engage_assets.domain.events import ParsedEvent
from engage_assets.domain.filters import compile_chain
from engage_assets.domain.marketplaces import MARKETPLACE_FILTER, split_marketplaces
from engage_assets.domain.models import ModelRef
from engage_assets.domain.pipeline import apply_filter_chain
from engage_assets.domain.plan import PLAN_SCHEMA
from engage_assets.reactive.context import enrich, gather
from engage_assets.reactive.events import EventBatch, split_events
from engage_assets.reactive.offers import candidate_records, score_and_offer, touch_plan
from resources.cart_state.base import CartStateStore
from resources.dedup.base import DedupStore
from resources.delivery_ledger.base import DeliveryLedgerBackend
from resources.scoring.base import ScoringResource
from resources.store.base import CandidateStore
from resources.warehouse.base import WarehouseResource

UNKNOWN_CUSTOMER = "unknown_customer"


@dataclass
class DecisionParts:
    """The resources `decide` uses."""

    warehouse: WarehouseResource  # customer, cart and stock context
    scoring: ScoringResource  # purchase intent, with `model`
    model: ModelRef  # the promoted purchase-intent version
    store: CandidateStore  # candidates (7-day TTL)
    ledger: DeliveryLedgerBackend  # recovery messages of the last 7 days; touches planned
    dedup: DedupStore  # claims on event keys
    cart_state: CartStateStore  # purchases and stock changes from events


@dataclass(frozen=True)
class Quarantined:
    """An event set aside, with a reason code: not an error, not retried."""

    event_id: str
    reason: str


@dataclass
class DecisionResult:
    """What `decide` did with a batch: counts per stage and per filter, and what it wrote."""

    program_id: str
    received: int = 0  # events in the batch, every kind
    abandoned: int = 0  # CartAbandoned events (copies included)
    unique: int = 0  # distinct dedup keys among them
    claimed: int = 0  # keys claimed now: the carts decided
    duplicates: int = 0  # abandonment events dropped as copies or already decided
    in_flight: list[str] = field(default_factory=list)  # event ids whose key another consumer holds: retry later
    quarantined: list[Quarantined] = field(default_factory=list)
    purchases_recorded: int = 0
    stock_changes_recorded: int = 0
    removed: OrderedDict[str, int] = field(default_factory=OrderedDict)  # per filter, chain order
    reasons: dict[str, str] = field(default_factory=dict)  # per filter
    rejected: list[dict[str, Any]] = field(default_factory=list)  # customer_id, subject_id, stage, filter_id, reason
    eligible: int = 0
    holdout: int = 0
    candidates: list[dict[str, Any]] = field(default_factory=list)  # the records written to the store
    candidates_written: int = 0
    skipped_newer: int = 0  # records the store kept a newer cart of the customer over
    touches: pa.Table = field(default_factory=PLAN_SCHEMA.empty_table)  # every touch planned (PLAN_SCHEMA)
    touches_inserted: int = 0  # touches new to the ledger

    @property
    def stages(self) -> OrderedDict[str, int]:
        """Rows left after each stage, in order."""
        return OrderedDict(
            received=self.received,
            abandoned=self.abandoned,
            unique=self.unique,
            claimed=self.claimed,
            known_customer=self.claimed - len(self.quarantined),
            eligible=self.eligible,
            stored=len(self.candidates),
            touches=self.touches.num_rows,
        )


def _claim(program: ReactiveProgram, dedup: DedupStore, batch: EventBatch, now: float, result: DecisionResult) -> set:
    """Claim the batch's keys; fill the duplicate and in-flight counts; the claimed keys."""
    keys = batch.abandoned.column("dedup_key").to_pylist()
    if not program.deduplication.enabled:
        claimed = set(keys)
    else:
        claimed = dedup.claim(keys, program.deduplication.ttlDays * 86_400, now)
        held = dedup.in_flight(sorted(set(keys) - claimed), now)
        result.in_flight = sorted(e for k in held for e in batch.events_by_key[k])
    result.claimed = len(claimed)
    result.duplicates = result.abandoned - len(claimed) - len(result.in_flight)
    return claimed


def _rows_of(table: pa.Table, column: str, values: set) -> pa.Table:
    """The rows of `table` whose `column` is one of `values`."""
    return table.filter(pc.is_in(table.column(column), value_set=pa.array(sorted(values), pa.string())))


def decide(
    program: ReactiveProgram, events: Sequence[ParsedEvent], parts: DecisionParts, now: datetime
) -> DecisionResult:
    """Decide a batch of parsed events (one or many): see the module docstring.  The cyclic garbage collector
    waits until the batch is decided (`collector_paused`): a batch's tables and rows hold no reference cycles, and
    the full passes its thousands of young objects trigger cost more than the deciding (a quarter of the time)."""
    with collector_paused():
        return _decide(program, events, parts, now)


def _decide(
    program: ReactiveProgram, events: Sequence[ParsedEvent], parts: DecisionParts, now: datetime
) -> DecisionResult:
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    batch = split_events(program, events)
    result = DecisionResult(
        program_id=program.programId,
        received=batch.received,
        abandoned=sum(len(ids) for ids in batch.events_by_key.values()),
        unique=batch.abandoned.num_rows,
    )
    result.purchases_recorded = parts.cart_state.record_purchases(batch.purchases)
    result.stock_changes_recorded = parts.cart_state.record_stock(batch.stock)
    claimed = _claim(program, parts.dedup, batch, now.timestamp(), result)
    try:
        quarantined_keys = _decide_claimed(program, parts, batch, claimed, now, result)
    except BaseException:
        if program.deduplication.enabled:
            parts.dedup.release(sorted(claimed))
        raise
    if program.deduplication.enabled:
        parts.dedup.release(sorted(quarantined_keys))
        parts.dedup.complete(sorted(claimed - quarantined_keys), now.timestamp())
    return result


def _decide_claimed(
    program: ReactiveProgram,
    parts: DecisionParts,
    batch: EventBatch,
    claimed: set,
    now: datetime,
    result: DecisionResult,
) -> set:
    """Steps 3-5 for the claimed carts; the dedup keys of the quarantined ones."""
    table = _rows_of(batch.abandoned, "dedup_key", claimed)
    if table.num_rows == 0:
        return set()
    items = _rows_of(batch.items, "cart_id", set(table.column("cart_id").to_pylist()))
    ctx = gather(parts.warehouse, parts.cart_state, parts.ledger, program, table, items, now)
    enriched = enrich(program, table, items, ctx, now)
    known = enriched.column("known_customer")
    unknown = enriched.filter(pc.invert(known))
    result.quarantined = [Quarantined(e, UNKNOWN_CUSTOMER) for e in unknown.column("event_id").to_pylist()]
    inside, outside = split_marketplaces(enriched.filter(known), program.marketplaces)
    stage = apply_filter_chain(program, inside)
    chain = compile_chain(program.ordered_filters(), set(enriched.column_names))
    result.removed = OrderedDict([(MARKETPLACE_FILTER, outside.num_rows), *stage.removed.items()])
    result.reasons = {MARKETPLACE_FILTER: "customer outside the program's marketplaces"}
    result.reasons.update({f.filter_id: f.reason for f in chain})
    result.rejected = [
        {
            "customer_id": r["customer_id"],
            "subject_id": r["cart_id"],
            "stage": "source_candidates",
            "filter_id": MARKETPLACE_FILTER,
            "reason": r["rejection_reason"],
        }
        for r in outside.select(["customer_id", "cart_id", "rejection_reason"]).to_pylist()
    ] + stage.rejected.to_pylist()
    result.eligible = stage.table.num_rows
    offers = score_and_offer(program, stage.table, parts.scoring, parts.model)
    result.holdout = int(pc.sum(offers.column("holdout").cast(pa.int64())).as_py() or 0)
    _store(program, parts, offers, now, result)
    return set(unknown.column("dedup_key").to_pylist())


def _store(
    program: ReactiveProgram, parts: DecisionParts, offers: pa.Table, now: datetime, result: DecisionResult
) -> None:
    """Write each candidate to its cart's partition, then plan its touches there: one store write and one ledger
    write for the whole batch."""
    records = candidate_records(program, offers, parts.model, now)
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_partition.setdefault(rec["partitionKey"], []).append(rec)
    written = parts.store.replace_partitions(program.programId, by_partition, now=now.timestamp())
    result.candidates_written, result.skipped_newer = written.written, written.skipped_newer
    result.candidates = records
    plan = touch_plan(program, offers, now)
    result.touches = plan
    if plan.num_rows:
        result.touches_inserted = parts.ledger.plan_partitions(plan, program.programId, int(now.timestamp())).inserted
