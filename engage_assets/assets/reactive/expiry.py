"""`<group>_cart_expiry`: hourly, the carts abandoned longer ago than the cart TTL leave recovery.

The cart TTL is the program's `deduplication.ttlDays` (7 days, the spec's cart lifecycle): the time a decided cart's
key stays claimed, after which the cart is no longer the customer's open cart.  Every decided cart has its own
partition in the delivery ledger, `<abandoned at>Z~<cart id>` (`engage_assets.reactive.events.partition_key`), so
the carts to expire are the program's partitions older than `now - TTL`.  A run looks at those abandoned within
`lookback_hours` before that cutoff (48 by default: two days of missed runs are caught up; after a longer outage run
the job once with a larger lookback) and
1. cancels their touches still `planned`: suppressed with reason `expired` (`suppress_planned`; a touch claimed,
   sent or already suppressed is left as it is, so a sent e-mail stays sent);
2. marks the carts expired in the cart state (`CartStateStore.expire_carts`; the first mark stands).
Touches first, so a run that dies between the two leaves no planned touch that the next run would miss.  Both steps
only change what is still to change: a second run reports 0 and 0.

The candidates need nothing here: each carries `expiresAt` (decision time + `candidateTTLDays`, 7 days) and every
read of the candidate store filters expired ones (`resources.store`), whatever the backend's deletion lag.

Metadata (counts only, no customer id): carts_seen (partitions in the window), carts_expired (newly marked),
touches_cancelled.
"""
# No `from __future__ import annotations`: Dagster reads the op's context annotation at definition time.

from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field

from engage_assets.assets.reactive.decisions import decision_clock
from engage_assets.domain.config import ReactiveProgram
from engage_assets.reactive.events import partition_key
from resources.cart_state.base import CartStateStore
from resources.delivery_ledger.base import DeliveryLedgerBackend
from resources.delivery_ledger.resource import DeliveryLedgerResource

EXPIRED = "expired"
EXPIRY_CRON = "0 * * * *"


class CartExpiryConfig(dg.Config):
    as_of: str | None = Field(default=None, description="The expiry clock (ISO 8601, UTC if naive); default: now.")
    lookback_hours: int = Field(
        default=48, ge=1, description="How far before the cutoff abandoned carts are looked at (catch-up window)."
    )


def cart_expiry_job_name(program: ReactiveProgram) -> str:
    """`<group>_cart_expiry`."""
    return f"{program.group}_cart_expiry"


def cart_ttl(program: ReactiveProgram) -> timedelta:
    """How long after its abandonment a decided cart stays in recovery: `deduplication.ttlDays`."""
    return timedelta(days=program.deduplication.ttlDays)


def expire_carts(
    program: ReactiveProgram,
    ledger: DeliveryLedgerBackend,
    cart_state: CartStateStore,
    now: datetime,
    lookback_hours: int = 48,
) -> dict[str, int]:
    """Expire the program's carts abandoned in the `lookback_hours` before `now - TTL` (module docstring)."""
    cutoff = now - cart_ttl(program)
    start = partition_key(cutoff - timedelta(hours=lookback_hours), "")
    carts = ledger.partition_subjects(program.programId, start, partition_key(cutoff, ""))
    cancelled = ledger.suppress_planned(program.programId, list(carts), EXPIRED, int(now.timestamp()))
    expired = cart_state.expire_carts(program.programId, list(carts.values()), now.timestamp())
    return {"carts_seen": len(carts), "carts_expired": len(expired), "touches_cancelled": cancelled}


def build_cart_expiry(program: ReactiveProgram) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The program's `<group>_cart_expiry` job and its hourly schedule (running by default if the program is)."""
    name = cart_expiry_job_name(program)

    @dg.op(
        name=f"{program.group}__expire_carts",
        out=dg.Out(dg.Nothing),
        tags={"engage/program": program.programId},
        description="Cancel the planned touches of carts abandoned longer ago than the cart TTL; mark them expired.",
    )
    def expire_op(
        context: dg.OpExecutionContext,
        config: CartExpiryConfig,
        delivery_ledger: DeliveryLedgerResource,
        cart_state: CartStateStore,
    ) -> dg.Output:
        now = decision_clock(config.as_of)
        counts = expire_carts(program, delivery_ledger.ledger(), cart_state, now, config.lookback_hours)
        context.log.info(f"{program.programId} cart expiry: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        return dg.Output(None, metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()})

    @dg.job(
        name=name,
        executor_def=dg.in_process_executor,
        tags={"engage/program": program.programId},
        description=f"{program.programName}: expire carts abandoned over {program.deduplication.ttlDays} days "
        "(planned touches suppressed `expired`; hourly).",
    )
    def expiry_job() -> None:
        expire_op()

    status = dg.DefaultScheduleStatus.RUNNING if program.enabled else dg.DefaultScheduleStatus.STOPPED
    schedule = dg.ScheduleDefinition(
        name=f"{name}_schedule", job=expiry_job, cron_schedule=EXPIRY_CRON, default_status=status
    )
    return expiry_job, schedule
