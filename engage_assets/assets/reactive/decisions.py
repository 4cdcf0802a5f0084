"""The decision stages of a reactive program, one multi-asset (op `<group>__cart_decisions`): decide the event
batches of one hour.

Its assets carry the batch programs' stage names, so the UI shows one lineage for every program: `source_candidates`
(the hour's events, de-duplicated, claimed and enriched) → `eligible_candidates` → `scored_candidates` → `offers` →
`stored_candidates` → `touch_plan` → `deliveries`.  One op materializes them together from ONE `decide` call (the
code path a single event takes too): a stage is a view of the same micro-batch, not a separate computation.

Partitioned by the hour (UTC) of the events' own time, from the program's `partitionsStart` up to the current hour.
A run reads the batch files the cart-event sensor wrote for its partition (`resources.event_batches`): the ones its
run config names (`batch_ids`, what the sensor's run request sets), or every stored batch of the hour when none is
named, so a backfill of any hour replays it.  The events are parsed (`parse_event`) and decided as one micro-batch
(`engage_assets.reactive.decide`): dedup claims, enrichment from the warehouse (read only), the filter chain, the
purchase-intent score, discount, holdout, candidates stored and touches planned in the delivery ledger.  Every write
of `decide` is idempotent, so replaying a partition adds nothing.

Metadata, per stage (`stage_metadata`): row counts, duplicates and quarantined events by reason (source), the filter
funnel (eligible), the mean score, holdout and segments (offers), candidates written, touches planned by channel.
"""

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from engage_assets.assets.history import record_decided
from engage_assets.assets.keys import mart_asset_key, refuse_failed_marts
from engage_assets.assets.reactive.names import intent_model_key
from engage_assets.delivery.stats import touches_by_channel
from engage_assets.domain import pipeline
from engage_assets.domain.bulk import collector_paused
from engage_assets.domain.config import ReactiveProgram
from engage_assets.domain.events import ParsedEvent, Rejected, parse_event
from engage_assets.reactive import DecisionParts, DecisionResult, decide
from engage_assets.reactive.training import current_intent_model
from resources.cart_state.base import CartStateStore
from resources.dedup.base import DedupStore
from resources.delivery_ledger.resource import DeliveryLedgerResource
from resources.event_batches import EventBatchStore
from resources.exports.base import ExportResource
from resources.scoring.base import ScoringResource
from resources.staging import ModelStoreResource
from resources.store.base import CandidateStore
from resources.warehouse.base import WarehouseResource

DECISIONS = "cart_decisions"


class CartDecisionConfig(dg.Config):
    batch_ids: list[str] = Field(
        default_factory=list, description="The batches to decide (the sensor names one); empty: every batch stored."
    )
    as_of: str | None = Field(default=None, description="The decision clock (ISO 8601, UTC if naive); default: now.")


def hourly_partitions(program: ReactiveProgram) -> dg.HourlyPartitionsDefinition:
    """Hours (UTC) from the program's `partitionsStart`, the current hour included (events arrive during it)."""
    start = datetime.combine(program.partitionsStart, datetime.min.time())
    return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)


def decision_clock(as_of: str | None) -> datetime:
    """The decision's `now`: `as_of` (UTC if naive) or the current time."""
    if not as_of:
        return datetime.now(UTC)
    dt = datetime.fromisoformat(as_of)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def load_events(
    store: EventBatchStore, program_id: str, partition: str, batch_ids: list[str]
) -> tuple[list[ParsedEvent], Counter[str], int]:
    """The parsed events of the batches (every stored one when `batch_ids` is empty), the reasons of bodies that no
    longer parse (the sensor checked them: a count, not an error), and how many batches were read."""
    ids = batch_ids or store.batch_ids(program_id, partition)
    events: list[ParsedEvent] = []
    rejected: Counter[str] = Counter()
    with collector_paused():  # thousands of parsed events, no reference cycles: no full collections meanwhile
        for batch_id in ids:
            for line in store.read(program_id, partition, batch_id):
                parsed = parse_event(line.body)
                if isinstance(parsed, Rejected):
                    rejected[parsed.reason] += 1
                else:
                    events.append(parsed)
    return events, rejected, len(ids)


# The batch programs' stage names, so the UI shows the same lineage for every program; one op computes them all.
STAGES: tuple[tuple[str, str], ...] = (
    (
        "source_candidates",
        "The hour's cart events, read from the batches the cart-event sensor stored: abandonments de-duplicated on "
        "the program's key and claimed for its TTL, enriched with the customer, the cart, the stock and the recovery "
        "messages of the last 7 days; purchases and stock changes recorded in the cart state; events of customers "
        "the warehouse does not know quarantined.",
    ),
    (
        "eligible_candidates",
        "The carts that pass the filter chain (trust incl. payment method, cart value, eligibility, frequency cap, "
        "inventory): per-filter removed counts and the funnel.",
    ),
    ("scored_candidates", "The eligible carts scored by the promoted purchase-intent model."),
    ("offers", "Each scored cart's discount (the discount strategy, never above maxDiscount) and the holdout."),
    ("stored_candidates", "The candidates written to the candidate store, one per cart partition, with their TTL."),
    ("touch_plan", "The touches planned in the delivery ledger: e-mail +60 min, SMS +24 h, push +72 h."),
)
TOUCH_PLAN = STAGES[-1][0]
MARTS_READ = [mart_asset_key("carts"), mart_asset_key("cart_customer_context")]  # blocking dbt tests guard them


def stage_metadata(result: DecisionResult, batches: int, unparsed: Counter[str]) -> dict[str, dict[str, Any]]:
    """Each stage's metadata, counts only (no customer data); every key is on one stage only (the CLI sums them)."""
    quarantined = Counter(q.reason for q in result.quarantined) + unparsed
    stages = result.stages
    funnel = [("known_customer", stages["known_customer"])]
    for fid, removed in result.removed.items():
        funnel.append((fid, funnel[-1][1] - removed))
    scores = [float(c["score"]) for c in result.candidates]
    return {
        "source_candidates": {
            "dagster/row_count": stages["known_customer"],
            "batches": batches,
            **{f"stage/{k}": stages[k] for k in ("received", "abandoned", "unique", "claimed", "known_customer")},
            "duplicates": result.duplicates,
            "in_flight": len(result.in_flight),
            "quarantined": sum(quarantined.values()),
            **{f"quarantined/{k}": v for k, v in sorted(quarantined.items())},
            "purchases_recorded": result.purchases_recorded,
            "stock_changes_recorded": result.stock_changes_recorded,
        },
        "eligible_candidates": {
            "dagster/row_count": stages["eligible"],
            "stage/eligible": stages["eligible"],
            **{f"removed/{fid}": v for fid, v in result.removed.items()},
            "funnel": dg.MetadataValue.md(pipeline.funnel_markdown(funnel)),
        },
        "scored_candidates": {
            "dagster/row_count": len(scores),
            "mean_score": round(sum(scores) / len(scores), 4) if scores else 0.0,
        },
        "offers": {
            "dagster/row_count": len(result.candidates),
            "holdout": result.holdout,
            **{f"segment/{k}": v for k, v in sorted(Counter(c["segment"] for c in result.candidates).items())},
        },
        "stored_candidates": {
            "dagster/row_count": result.candidates_written,
            "stage/stored": stages["stored"],
            "skipped_newer": result.skipped_newer,
        },
        "touch_plan": {
            "dagster/row_count": result.touches.num_rows,
            "stage/touches": stages["touches"],
            "touches_inserted": result.touches_inserted,
            **touches_by_channel(result.touches),
        },
    }


def stage_specs(program: ReactiveProgram) -> list[dg.AssetSpec]:
    """The stages' asset specs, each depending on the one before; the warehouse marts and the model where read."""
    g = program.group
    upstream = {
        "source_candidates": MARTS_READ,
        "scored_candidates": [intent_model_key(program)],
    }
    specs: list[dg.AssetSpec] = []
    for name, description in STAGES:
        deps = [specs[-1].key] if specs else []
        specs.append(
            dg.AssetSpec(
                key=dg.AssetKey([g, name]),
                group_name=g,
                deps=deps + upstream.get(name, []),
                kinds={"sqlite"},
                tags={"engage/program": program.programId},
                description=description,
            )
        )
    return specs


def cart_decisions_asset(program: ReactiveProgram) -> dg.AssetsDefinition:
    """The program's decision stages (module docstring): one multi-asset, one op, one `decide` per run."""
    g = program.group

    @dg.multi_asset(
        name=f"{g}__{DECISIONS}",
        specs=stage_specs(program),
        partitions_def=hourly_partitions(program),
        description="The hour's cart events decided as one micro-batch, every stage at once (one code path for an "
        "event and a batch): dedup, enrichment, filter chain, purchase intent, discount, holdout; candidates stored "
        "and touches planned. Idempotent: replaying an hour adds nothing.",
    )
    def cart_decisions(
        context: dg.AssetExecutionContext,
        config: CartDecisionConfig,
        warehouse: WarehouseResource,
        scoring: ScoringResource,
        models: ModelStoreResource,
        store: CandidateStore,
        delivery_ledger: DeliveryLedgerResource,
        dedup: DedupStore,
        cart_state: CartStateStore,
        event_batches: EventBatchStore,
        platform_history: ExportResource,
    ) -> Iterator[dg.MaterializeResult]:
        refuse_failed_marts(context, program, MARTS_READ)  # a failed dbt test on a mart it reads: not run
        events, unparsed, batches = load_events(
            event_batches, program.programId, context.partition_key, config.batch_ids
        )
        parts = DecisionParts(
            warehouse=warehouse,
            scoring=scoring,
            model=current_intent_model(program, models.registry()),
            store=store,
            ledger=delivery_ledger.ledger(),
            dedup=dedup,
            cart_state=cart_state,
        )
        result = decide(program, events, parts, decision_clock(config.as_of))
        if result.in_flight:
            context.log.warning(f"{len(result.in_flight)} events held by another consumer: replay the hour later")
        context.log.info(f"{program.programId} {context.partition_key}: {dict(result.stages)}")
        record_decided(platform_history, program, context.partition_key, result.candidates)  # with the holdout
        for name, metadata in stage_metadata(result, batches, unparsed).items():
            yield dg.MaterializeResult(asset_key=dg.AssetKey([g, name]), metadata=metadata)

    return cart_decisions
