"""`[group, "cart_decisions"]` of a reactive program: decide the event batches of one hour.

Partitioned by the hour (UTC) of the events' own time, from the program's `partitionsStart` up to the current hour.
A run reads the batch files the cart-event sensor wrote for its partition (`resources.event_batches`): the ones its
run config names (`batch_ids`, what the sensor's run request sets), or every stored batch of the hour when none is
named, so a backfill of any hour replays it.  The events are parsed (`parse_event`) and decided as one micro-batch
(`engage_assets.reactive.decide`): dedup claims, enrichment from the warehouse (read only), the filter chain, the
purchase-intent score, discount, holdout, candidates stored and touches planned in the delivery ledger.  Every write
of `decide` is idempotent, so replaying a partition adds nothing.

Metadata: candidates stored (`dagster/row_count`), the stage counts, the filter funnel, duplicates, quarantined
events by reason, touches planned by channel.
"""

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from engage_assets.assets.dbt import mart_asset_key
from engage_assets.assets.delivery import touches_by_channel
from engage_assets.assets.reactive.model import intent_model_key
from engage_assets.domain import pipeline
from engage_assets.domain.config import ReactiveProgram
from engage_assets.domain.events import ParsedEvent, Rejected, parse_event
from engage_assets.reactive import DecisionParts, DecisionResult, decide
from engage_assets.reactive.training import current_intent_model
from resources.cart_state.base import CartStateStore
from resources.dedup.base import DedupStore
from resources.delivery_ledger.resource import DeliveryLedgerResource
from resources.event_batches import EventBatchStore
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
    for batch_id in ids:
        for line in store.read(program_id, partition, batch_id):
            parsed = parse_event(line.body)
            if isinstance(parsed, Rejected):
                rejected[parsed.reason] += 1
            else:
                events.append(parsed)
    return events, rejected, len(ids)


def decision_metadata(result: DecisionResult, batches: int, unparsed: Counter[str]) -> dict[str, Any]:
    """Counts only (no customer data): stages, the filter funnel, duplicates, quarantined, touches by channel."""
    quarantined = Counter(q.reason for q in result.quarantined) + unparsed
    funnel = [("known_customer", result.stages["known_customer"])]
    for fid, removed in result.removed.items():
        funnel.append((fid, funnel[-1][1] - removed))
    return {
        "dagster/row_count": len(result.candidates),
        "batches": batches,
        **{f"stage/{k}": v for k, v in result.stages.items()},
        **{f"removed/{fid}": v for fid, v in result.removed.items()},
        "funnel": dg.MetadataValue.md(pipeline.funnel_markdown(funnel)),
        "duplicates": result.duplicates,
        "in_flight": len(result.in_flight),
        "holdout": result.holdout,
        "quarantined": sum(quarantined.values()),
        **{f"quarantined/{k}": v for k, v in sorted(quarantined.items())},
        "purchases_recorded": result.purchases_recorded,
        "stock_changes_recorded": result.stock_changes_recorded,
        "touches_inserted": result.touches_inserted,
        **touches_by_channel(result.touches),
    }


def cart_decisions_asset(program: ReactiveProgram) -> dg.AssetsDefinition:
    """The program's `cart_decisions` asset (module docstring)."""
    g = program.group

    @dg.asset(
        key=dg.AssetKey([g, DECISIONS]),
        group_name=g,
        partitions_def=hourly_partitions(program),
        deps=[intent_model_key(program), mart_asset_key("carts"), mart_asset_key("customers")],
        kinds={"sqlite"},
        tags={"engage/program": program.programId},
        description="The hour's cart events (the batches the cart-event sensor stored) decided: dedup, enrichment, "
        "filter chain, purchase intent, discount, holdout; candidates stored and touches planned. Idempotent: "
        "replaying an hour adds nothing.",
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
    ) -> dg.MaterializeResult:
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
        return dg.MaterializeResult(metadata=decision_metadata(result, batches, unparsed))

    return cart_decisions
