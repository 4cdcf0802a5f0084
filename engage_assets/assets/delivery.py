"""Dagster wiring of delivery, per program: `[group, "touch_plan"]`, `[group, "deliveries"]`, `<group>_deliver`, and
the due-touch sensor.

- `touch_plan` is partitioned like the program's other assets: it reads the partition's `offers`, asks the planner
  (`plan.plan_touches`) for the touches, and writes them to the delivery ledger (re-running a partition replaces
  touches still planned; nothing sent is ever touched again).
- `deliveries` is NOT partitioned: what is due at a moment spans partitions (a cart's +72 h touch, win-back's +3 days
  SMS, a retry of last week's outage), so one delivery run takes every due touch of the program as of its send clock
  (`as_of` in run config, default the run's start).  It depends on every touch_plan partition (lineage only).
- a reactive program (abandoned cart): its `touch_plan` stage (one op with its other decision stages) plans the touches
  (`engage_assets.assets.reactive`), its `deliveries` re-checks `not_converted` against the cart state's purchases.
- `<group>_deliver` runs `deliveries` in process (ARCHITECTURE §10: no per-step subprocess for a latency-sensitive
  job); the due-touch sensor (`sensors/due_touches.py`) launches it.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

from engage_assets.assets.dbt import WAREHOUSE_POOL, mart_asset_key
from engage_assets.assets.history import history_days, record_contacts
from engage_assets.assets.program import (
    SINGLE_RUN,
    PartitionWindow,
    erased_since,
    partitions_for,
    stream_partitions,
    without_customers,
)
from engage_assets.delivery.engine import ChannelFactory, DeliveryEngine, DeliveryStats, EngineConfig
from engage_assets.delivery.stats import touches_by_channel
from engage_assets.domain.channels import CHANNEL_SPECS, channel_resource_keys
from engage_assets.domain.config import ProgramBase, ProgramConfig, ReactiveProgram
from engage_assets.domain.contacts import CONTACT_COLUMNS
from engage_assets.domain.plan import plan_touches
from engage_assets.domain.templates import TemplateRenderer, config_texts
from resources.cart_state.base import CartConversions, CartStateStore
from resources.channels.engagement_channels import CallTaskChannel, InboxChannel
from resources.customer_state import CustomerState
from resources.delivery_ledger.resource import DeliveryLedgerResource
from resources.engagement.base import EngagementStore
from resources.pressure import ContactPressureResource
from resources.refund_events.base import RefundEventPublisher, publish_issuances
from resources.refund_ledger.resource import RefundLedgerResource
from resources.warehouse.base import WarehouseResource
from sensors.due_touches import deliver_job_name


class DeliveryRunConfig(dg.Config):
    as_of: str | None = Field(
        default=None,
        description="Send clock (ISO 8601, UTC if naive); default: now. A demo "
        "delivers 'as of' the next 10:00 local with it.",
    )
    max_touches: int | None = Field(default=None, description="Stop after this many due touches (bounded run).")
    claim_lease_s: int = Field(
        default=600, description="A `sending` claim older than this is resolved by the recovery rule."
    )
    send_stale: bool = Field(
        default=False,
        description="Send touches planned longer ago than the program's `delivery.staleAfterHours` anyway (they are "
        "recorded `stale` otherwise), including those earlier runs recorded `stale`. For a deliberate backfill.",
    )


def send_clock(as_of: str | None) -> int:
    if not as_of:
        return int(time.time())
    dt = datetime.fromisoformat(as_of)
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


def stats_metadata(stats: DeliveryStats) -> dict[str, Any]:
    """Counts only: by channel and outcome, and by channel/outcome/reason (no ids, no addresses)."""
    reasons = stats.by_reason()
    table = ["| channel/outcome/reason | touches |", "|---|---:|"] + [f"| {k} | {v:,} |" for k, v in reasons.items()]
    return {
        "sent": stats.total("sent"),
        "suppressed": stats.total("suppressed"),
        "failed": stats.total("failed"),
        "retry": stats.total("retry"),
        "deferred": stats.total("deferred"),
        "stale": stats.total("stale"),
        "recovered": stats.recovered,
        "reopened_stale": stats.reopened,
        "by_channel": dg.MetadataValue.json(stats.by_channel()),
        "by_reason": dg.MetadataValue.md("\n".join(table)) if reasons else "none",
        "seconds": round(stats.seconds, 2),
        "msgs_per_s": round(stats.total("sent") / stats.seconds, 1) if stats.seconds else 0.0,
    }


# What `deliveries` reads besides the channels' own resources (`channel_resource_keys()`, from the registry).
DELIVERY_RESOURCE_KEYS = {
    "delivery_ledger",
    "contact_pressure",
    "engagement",
    "customer_state",
    "refund_ledger",
    "platform_history",
    "outcomes",
}
# Channels the engagement store serves, by the registry's `store_queue`: call tasks and the in-app inbox.
STORE_QUEUE_CHANNELS: dict[str, Callable[[EngagementStore], ChannelFactory]] = {
    "call_tasks": CallTaskChannel,
    "inbox": InboxChannel,
}


def delivery_channels(resources: Any, engagement: EngagementStore) -> dict[str, ChannelFactory]:
    """Channel type → its sender, for every type in the channel registry: the resource its spec names
    (`email_channel`, …) from `resources` (a run's `context.resources`), or the engagement-store queue it is
    served by."""
    out: dict[str, ChannelFactory] = {}
    for spec in CHANNEL_SPECS:
        if spec.resource_key is not None:
            out[spec.type] = getattr(resources, spec.resource_key)
        elif spec.store_queue is not None:
            out[spec.type] = STORE_QUEUE_CHANNELS[spec.store_queue](engagement)
    return out


def channel_configs(programs: list[ProgramBase]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p.programId, ch.channelId): ch.config.model_dump(exclude_none=True) for p in programs for ch in p.channels}


def plan_partition(
    program: ProgramConfig, window: PartitionWindow, offers: pa.Table, resources: Any
) -> tuple[pa.Table, dict[str, Any]]:
    """One partition's touch plan, written to the delivery ledger (with its refunds), and its metadata.

    GDPR: the deletions are re-read just before planning (a customer erased while the run was under way is never
    planned), and again after the ledger write (a deletion recorded meanwhile is erased from the ledger at once);
    `excluded_erased` counts both."""
    engagement: EngagementStore = resources.engagement
    ledger = resources.delivery_ledger.ledger()
    now = datetime.combine(window.end, datetime.min.time(), tzinfo=UTC)
    erased = engagement.deleted_customers()
    offers, excluded = without_customers(offers, erased)
    customers = _customers_for(resources.warehouse, offers)
    plan = plan_touches(program, offers, customers, now, partition_key=window.partition_key)
    result = ledger.plan(plan, program.programId, window.partition_key, int(time.time()))
    late = erased_since(engagement, erased, offers)
    if late:
        ledger.erase_customers(sorted(late))
        plan, _ = without_customers(plan, late, column="customerId")
    return plan, {
        "dagster/row_count": plan.num_rows,
        "excluded_erased": excluded + len(late),
        "held_out": result.held_out,
        "inserted": result.inserted,
        "replaced_planned": result.replaced,
        "removed_planned": result.removed,
        "kept_past_planned": result.kept,
        **touches_by_channel(plan),
        **_issue_refunds(program, resources, plan, window.partition_key),
    }


def touch_plan_asset(program: ProgramConfig, parts: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """`[group, "touch_plan"]` of one program: plan each partition's offers and write the touches to the ledger."""
    g = program.group

    @dg.asset(
        key=dg.AssetKey([g, "touch_plan"]),
        group_name=g,
        partitions_def=parts,
        tags={"engage/program": program.programId},
        kinds={"sqlite"},
        backfill_policy=SINGLE_RUN,
        pool=WAREHOUSE_POOL,
        ins={"offers": dg.AssetIn(dg.AssetKey([g, "offers"]))},
        required_resource_keys={"warehouse", "delivery_ledger", "refund_ledger", "refund_events", "engagement"},
        description="The touches each candidate's channels ask for (send time 10:00 local, delays, "
        "conditions), written to the delivery ledger; holdout candidates are recorded as held out. "
        "Re-running a partition replaces touches still planned and never un-sends. Customers deleted (GDPR) while "
        "the run was under way are never planned.",
    )
    def touch_plan(context: dg.AssetExecutionContext, offers):
        def one(window: PartitionWindow, offers) -> tuple[Any, dict[str, Any]]:
            return plan_partition(program, window, offers, context.resources)

        return stream_partitions(context, parts, offers, one)

    return touch_plan


def _issue_refunds(program: ProgramConfig, resources: Any, plan: pa.Table, partition_key: str) -> dict[str, Any]:
    """`refunds/<count>` metadata of the refunds and credits issued with a plan (none without a refund strategy)."""
    if program.refundStrategy is None:
        return {}
    # Refunds and credits are issued with the plan (auto-processed, or queued where the segment requires
    # approval), within the partition's budget, idempotently per candidate.
    refund_ledger: RefundLedgerResource = resources.refund_ledger
    refund_events: RefundEventPublisher = resources.refund_events
    ledger = refund_ledger.ledger()
    issued = ledger.issue(program, plan, partition_key)
    # Then every issued, unacknowledged issuance of the program (this run's, an earlier run's failed publication,
    # an approved one) is published to the order and billing systems, once acknowledged marked published.
    published = publish_issuances(ledger, refund_events, program.programId)
    return {
        **{f"refunds/{k}": v for k, v in vars(issued).items() if isinstance(v, (int, float))},
        "refunds/events_published": published.published,
        "refunds/events_failed": published.failed,
    }


def deliveries_asset(
    program: ProgramBase, programs: list[ProgramBase], upstream: str = "touch_plan"
) -> dg.AssetsDefinition:
    """`[group, "deliveries"]` of one program: send every due touch as of the run's send clock (not partitioned).

    `programs` are every program of the deployment: templates, contact pressure and channel configs span them.
    `upstream`: the asset that plans the touches (`touch_plan`, for a reactive program too).  A reactive
    program's `not_converted` touches are re-checked against the purchases its cart state records
    (`CartConversions`), so a cart bought after its e-mail gets no SMS nor push."""
    g = program.group
    reactive = isinstance(program, ReactiveProgram)
    keys = DELIVERY_RESOURCE_KEYS | set(channel_resource_keys()) | ({"cart_state"} if reactive else set())

    @dg.asset(
        key=dg.AssetKey([g, "deliveries"]),
        group_name=g,
        tags={"engage/program": program.programId},
        deps=[dg.AssetKey([g, upstream]), *([] if reactive else [mart_asset_key("conversions")])],
        kinds={"smtp", "sqlite"},
        required_resource_keys=keys,
        description="Every due touch of the program as of the send clock: re-check conditions, contact "
        "pressure, claim, render, send, record. Counts by channel, outcome and reason.",
    )
    def deliveries(context: dg.AssetExecutionContext, config: DeliveryRunConfig) -> dg.MaterializeResult:
        engine = delivery_engine(context.resources, programs, config, cart_conversions=reactive)
        stats = engine.run([program.programId], send_clock(config.as_of))
        sent_in = [key for pid, key in stats.sent_in if pid == program.programId]
        contacts = record_contacts(context.resources.platform_history, engine.ledger, program, history_days(sent_in))
        context.log.info(
            f"{program.programId}: sent {stats.total('sent')}, suppressed {stats.total('suppressed')}, "
            f"failed {stats.total('failed')}, retry {stats.total('retry')}, stale {stats.total('stale')}"
        )
        return dg.MaterializeResult(metadata={**stats_metadata(stats), "history/contacts_rewritten": contacts})

    return deliveries


def delivery_engine(
    resources: Any, programs: list[ProgramBase], config: DeliveryRunConfig, cart_conversions: bool = False
) -> DeliveryEngine:
    """The engine of one delivery run, from a run's `context.resources` and its run config; with
    `cart_conversions`, conversions are the cart purchases of `resources.cart_state`."""
    # Resources by key (the registry names the channels' keys), so a new channel needs no new parameter here.
    delivery_ledger: DeliveryLedgerResource = resources.delivery_ledger
    contact_pressure: ContactPressureResource = resources.contact_pressure
    engagement: EngagementStore = resources.engagement
    customer_state: CustomerState = resources.customer_state
    refund_ledger: RefundLedgerResource = resources.refund_ledger
    if cart_conversions:
        cart_state: CartStateStore = resources.cart_state
        customer_state = customer_state.use_conversions(CartConversions(cart_state))
    return DeliveryEngine(
        delivery_ledger.ledger(),
        delivery_channels(resources, engagement),
        customer_state.use_erasures(engagement).use_opt_outs(resources.outcomes),
        TemplateRenderer(messages=config_texts(programs), codes=refund_ledger.ledger()),
        contact_pressure.policy(programs),
        EngineConfig(
            max_touches=config.max_touches,
            claim_lease_s=config.claim_lease_s,
            stale_after_s={p.programId: p.delivery.stale_after_s for p in programs},
            send_stale=config.send_stale,
            channel_priority={(p.programId, ch.channelId): ch.priority for p in programs for ch in p.channels},
        ),
        channel_configs=channel_configs(programs),
    )


def build_delivery(
    program: ProgramConfig, all_programs: list[ProgramBase] | None = None
) -> tuple[list[Any], list[Any]]:
    """(assets, jobs) of one program's delivery; its due-touch sensor is `sensors.due_touches`."""
    touch_plan = touch_plan_asset(program, partitions_for(program))
    deliveries = deliveries_asset(program, list(all_programs or [program]))
    return [touch_plan, deliveries], [deliver_job(program, deliveries)]


def deliver_job(program: ProgramBase, deliveries: dg.AssetsDefinition) -> Any:
    """`<group>_deliver`: the program's `deliveries`, in process (the due-touch sensor launches it)."""
    return dg.define_asset_job(
        deliver_job_name(program),
        selection=dg.AssetSelection.assets(deliveries),
        tags={"engage/program": program.programId},
        executor_def=dg.in_process_executor,
        description=f"{program.programName}: deliver every due touch (in process).",
    )


def _customers_for(warehouse: WarehouseResource, offers) -> Any:
    """The offers' customers' contact and locale fields from marts.customers (read only)."""
    ids = sorted(set(offers.column("customer_id").cast(pa.string()).to_pylist())) if offers.num_rows else []
    if not ids:
        return pa.table({c: pa.array([], pa.string()) for c in CONTACT_COLUMNS})
    cols = ", ".join(CONTACT_COLUMNS)
    out = []
    for i in range(0, len(ids), 5_000):
        chunk = ids[i : i + 5_000]
        out.append(  # the ids bound as parameters, never spliced into the SQL
            warehouse.query_arrow(
                f"SELECT {cols} FROM marts.customers WHERE CAST(customer_id AS VARCHAR) IN (:ids)", {"ids": chunk}
            )
        )
    return pa.concat_tables(out)


def build_all_delivery(
    programs: list[ProgramConfig], all_programs: list[ProgramBase] | None = None
) -> tuple[list[Any], list[Any]]:
    """Every batch program's delivery: (assets, jobs); `all_programs` (default `programs`) are every program of the
    deployment, reactive ones included (templates, contact pressure and channel configs span them)."""
    everyone = list(all_programs or programs)
    built = [build_delivery(p, everyone) for p in programs]
    return [a for b in built for a in b[0]], [j for b in built for j in b[1]]
