"""Dagster wiring of delivery, per program: `[group, "touch_plan"]`, `[group, "deliveries"]`, `<group>_deliver`, and
the due-touch sensor.

- `touch_plan` is partitioned like the program's other assets: it reads the partition's `offers`, asks the planner
  (`plan.plan_touches`) for the touches, and writes them to the delivery ledger (re-running a partition replaces
  touches still planned; nothing sent is ever touched again).
- `deliveries` is NOT partitioned: what is due at a moment spans partitions (a cart's +72 h touch, win-back's +3 days
  SMS, a retry of last week's outage), so one delivery run takes every due touch of the program as of its send clock
  (`as_of` in run config, default the run's start).  It depends on every touch_plan partition (lineage only).
- `<group>_deliver` runs `deliveries` in process (ARCHITECTURE §10: no per-step subprocess for a latency-sensitive
  job); the due-touch sensor (`sensors/due_touches.py`) launches it.
"""

import time
from datetime import datetime, time as dtime, timezone
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from engage_assets.config import ProgramConfig
from engage_assets.delivery.conditions import CustomerState
from engage_assets.delivery.engine import DeliveryEngine, DeliveryStats, EngineConfig
from engage_assets.delivery.ledger import DeliveryLedger
from engage_assets.delivery.refunds import RefundLedgerResource
from engage_assets.delivery.pressure import PressurePolicy, program_cap
from engage_assets.dbt import WAREHOUSE_POOL
from engage_assets.factory import SINGLE_RUN, PartitionWindow, each_partition, partitions_for
from resources.channels import CallTaskChannel, DeliveryChannel, InboxChannel
from resources.engagement import EngagementStore
from resources.warehouse import WarehouseResource

if TYPE_CHECKING:
    from engage_assets.delivery.ledger_dynamodb import DynamoDbDeliveryLedger

CONTACT_COLUMNS = ("customer_id", "customer_name", "email", "phone", "marketplace", "time_zone", "email_opt_in",
                   "sms_opt_in", "push_opt_in", "phone_opt_in", "marketing_opt_out")


class DeliveryLedgerResource(dg.ConfigurableResource):
    """The delivery ledger shared by every program, run and sensor: SQLite (WAL) at `path`, or, when
    `dynamodb_table` is set (production: run workers on several machines), that DynamoDB table
    (`ledger_dynamodb.DynamoDbDeliveryLedger`; `path` is then unused)."""

    path: str
    busy_timeout_ms: int = 60_000
    dynamodb_table: str | None = Field(default=None, description="DynamoDB table of the ledger (production).")
    region_name: str | None = Field(default=None, description="AWS region of `dynamodb_table`.")
    endpoint_url: str | None = Field(default=None, description="Custom DynamoDB endpoint (tests: a moto server).")

    def ledger(self) -> "DeliveryLedger | DynamoDbDeliveryLedger":
        if self.dynamodb_table:
            from engage_assets.delivery.ledger_dynamodb import DynamoDbDeliveryLedger  # boto3 only where used

            return DynamoDbDeliveryLedger(self.dynamodb_table, region_name=self.region_name,
                                          endpoint_url=self.endpoint_url)
        return DeliveryLedger(self.path, self.busy_timeout_ms)


class ContactPressureResource(dg.ConfigurableResource):
    """Global contact-pressure settings; each program's own cap comes from its config."""

    global_cap: int = Field(default=5, ge=1, description="Touches per customer per window, every program.")
    global_window_days: int = Field(default=7, ge=1)
    quiet_start: str = Field(default="21:00", description="Local quiet hours start (HH:MM).")
    quiet_end: str = Field(default="08:00", description="Local quiet hours end (HH:MM).")

    def policy(self, programs: list[ProgramConfig]) -> PressurePolicy:
        def hhmm(v: str) -> dtime:
            h, m = v.split(":")
            return dtime(int(h), int(m))

        caps = {p.programId: c for p in programs if (c := program_cap(p)) is not None}
        return PressurePolicy(global_cap=self.global_cap, global_window_days=self.global_window_days,
                              quiet_start=hhmm(self.quiet_start), quiet_end=hhmm(self.quiet_end), program_caps=caps)


class DeliveryRunConfig(dg.Config):
    as_of: str | None = Field(default=None, description="Send clock (ISO 8601, UTC if naive); default: now. A demo "
                                                         "delivers 'as of' the next 10:00 local with it.")
    max_touches: int | None = Field(default=None, description="Stop after this many due touches (bounded run).")
    claim_lease_s: int = Field(default=600, description="A `sending` claim older than this is resolved by the "
                                                       "recovery rule.")


def send_clock(as_of: str | None) -> int:
    if not as_of:
        return int(time.time())
    dt = datetime.fromisoformat(as_of)
    return int((dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp())


def stats_metadata(stats: DeliveryStats) -> dict[str, Any]:
    """Counts only: by channel and outcome, and by channel/outcome/reason (no ids, no addresses)."""
    reasons = stats.by_reason()
    table = ["| channel/outcome/reason | touches |", "|---|---:|"] + [f"| {k} | {v:,} |" for k, v in reasons.items()]
    return {
        "sent": stats.total("sent"), "suppressed": stats.total("suppressed"), "failed": stats.total("failed"),
        "retry": stats.total("retry"), "deferred": stats.total("deferred"), "recovered": stats.recovered,
        "by_channel": dg.MetadataValue.json(stats.by_channel()),
        "by_reason": dg.MetadataValue.md("\n".join(table)) if reasons else "none",
        "seconds": round(stats.seconds, 2),
        "msgs_per_s": round(stats.total("sent") / stats.seconds, 1) if stats.seconds else 0.0,
    }


def channel_configs(programs: list[ProgramConfig]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p.programId, ch.channelId): ch.config.model_dump(exclude_none=True) for p in programs for ch in p.channels}


def build_delivery(program: ProgramConfig, all_programs: list[ProgramConfig] | None = None
                   ) -> tuple[list[Any], list[Any], list[Any]]:
    """(assets, jobs, sensors) of one program's delivery."""
    from sensors.due_touches import build_due_touch_sensor

    g = program.group
    parts = partitions_for(program)
    tags = {"engage/program": program.programId}
    programs = all_programs or [program]

    @dg.asset(key=dg.AssetKey([g, "touch_plan"]), group_name=g, partitions_def=parts, tags=tags, kinds={"sqlite"},
              backfill_policy=SINGLE_RUN, pool=WAREHOUSE_POOL,
              ins={"offers": dg.AssetIn(dg.AssetKey([g, "offers"]))},
              description="The touches each candidate's channels ask for (send time 10:00 local, delays, "
                          "conditions), written to the delivery ledger; holdout candidates are recorded as held out. "
                          "Re-running a partition replaces touches still planned and never un-sends.")
    def touch_plan(context: dg.AssetExecutionContext, offers, warehouse: WarehouseResource,
                   delivery_ledger: DeliveryLedgerResource, refund_ledger: RefundLedgerResource):
        from engage_assets.delivery.plan import plan_touches

        ledger = delivery_ledger.ledger()

        def one(window: PartitionWindow, offers) -> tuple[Any, dict[str, Any]]:
            now = datetime.combine(window.end, datetime.min.time(), tzinfo=timezone.utc)
            customers = _customers_for(warehouse, offers)
            plan = plan_touches(program, offers, customers, now, partition_key=window.partition_key)
            result = ledger.plan(plan, program.programId, window.partition_key, int(time.time()))
            refunds: dict[str, Any] = {}
            if program.refundStrategy is not None:
                # Refunds and credits are issued with the plan (auto-processed, or queued where the segment
                # requires approval), within the partition's budget, idempotently per candidate.
                issued = refund_ledger.ledger().issue(program, plan, window.partition_key)
                refunds = {f"refunds/{k}": v for k, v in vars(issued).items() if isinstance(v, (int, float))}
            by_channel: dict[str, int] = {}
            if plan.num_rows:
                for row in plan.group_by("channel").aggregate([("channel", "count")]).to_pylist():
                    by_channel[row["channel"]] = row["channel_count"]
            return plan, {
                "dagster/row_count": plan.num_rows, "held_out": result.held_out, "inserted": result.inserted,
                "replaced_planned": result.replaced, "removed_planned": result.removed,
                "kept_past_planned": result.kept, **{f"touches/{k}": v for k, v in sorted(by_channel.items())},
                **refunds,
            }

        value, meta = each_partition(context, parts, offers, one)
        context.add_output_metadata(meta)
        return value

    @dg.asset(key=dg.AssetKey([g, "deliveries"]), group_name=g, tags=tags, deps=[touch_plan],
              kinds={"smtp", "sqlite"},
              description="Every due touch of the program as of the send clock: re-check conditions, contact "
                          "pressure, claim, render, send, record. Counts by channel, outcome and reason.")
    def deliveries(context: dg.AssetExecutionContext, config: DeliveryRunConfig,
                   delivery_ledger: DeliveryLedgerResource, contact_pressure: ContactPressureResource,
                   email_channel: DeliveryChannel, sms_channel: DeliveryChannel, push_channel: DeliveryChannel,
                   engagement: EngagementStore, customer_state: CustomerState,
                   refund_ledger: RefundLedgerResource) -> dg.MaterializeResult:
        from engage_assets.delivery.templates import TemplateRenderer

        engine = DeliveryEngine(
            delivery_ledger.ledger(),
            {"email": email_channel, "sms": sms_channel, "push": push_channel,
             "phone": CallTaskChannel(engagement), "in-app": InboxChannel(engagement)},
            customer_state.use_erasures(engagement), TemplateRenderer(codes=refund_ledger.ledger()),
            contact_pressure.policy(programs),
            EngineConfig(max_touches=config.max_touches, claim_lease_s=config.claim_lease_s),
            channel_configs=channel_configs(programs))
        stats = engine.run([program.programId], send_clock(config.as_of))
        context.log.info(f"{program.programId}: sent {stats.total('sent')}, suppressed {stats.total('suppressed')}, "
                         f"failed {stats.total('failed')}, retry {stats.total('retry')}")
        return dg.MaterializeResult(metadata=stats_metadata(stats))

    job = dg.define_asset_job(f"{g}_deliver", selection=dg.AssetSelection.assets(deliveries), tags=tags,
                              executor_def=dg.in_process_executor,
                              description=f"{program.programName}: deliver every due touch (in process).")
    return [touch_plan, deliveries], [job], [build_due_touch_sensor(program, job.name)]


def _customers_for(warehouse: WarehouseResource, offers) -> Any:
    """The offers' customers' contact and locale fields from marts.customers (read only)."""
    import pyarrow as pa

    ids = sorted(set(offers.column("customer_id").cast(pa.string()).to_pylist())) if offers.num_rows else []
    if not ids:
        return pa.table({c: pa.array([], pa.string()) for c in CONTACT_COLUMNS})
    cols = ", ".join(CONTACT_COLUMNS)
    out = []
    for i in range(0, len(ids), 5_000):
        chunk = ids[i:i + 5_000]
        in_list = ", ".join("'" + c.replace("'", "''") + "'" for c in chunk)
        out.append(warehouse.query_arrow(f"SELECT {cols} FROM marts.customers WHERE CAST(customer_id AS VARCHAR) "
                                         f"IN ({in_list})"))
    return pa.concat_tables(out)


def build_all_delivery(programs: list[ProgramConfig]) -> tuple[list[Any], list[Any], list[Any]]:
    """Every program's delivery (assets, jobs, sensors), once the planning modules exist (plan, conditions,
    templates are another change; until they land the code location loads without delivery)."""
    import importlib.util

    if any(importlib.util.find_spec(f"engage_assets.delivery.{m}") is None for m in ("plan", "conditions", "templates")):
        return [], [], []
    built = [build_delivery(p, programs) for p in programs]
    return [a for b in built for a in b[0]], [j for b in built for j in b[1]], [s for b in built for s in b[2]]
