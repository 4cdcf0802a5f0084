"""The RECOVERY RULE of the delivery engine (described in `engage_assets.delivery.engine`'s docstring): touches
left in `sending` longer than the claim lease are re-claimed by the run that finds them and resolved.

Per page of in-doubt touches: re-claim each (a touch another run re-claimed first is left to it), look its
idempotency key up at the channel (found: `sent`, reason `recovered:found`).  A touch not found is about to be
sent again, so first it is re-checked as a new send would be, except for the caps (its own claim counted in them):

- its conditions against fresh state (`ConditionChecker.recheck`: erased, opted out since, account closed,
  converted, offer expired …) → `suppressed` with the reason (a `wait:` reason: back to planned, due later);
- contact pressure's consent part (`PressureState.check_claimed`: no contact, marketing or channel opt-out,
  invalid address, suppression list) → `suppressed`; quiet hours → back to `planned`, due when they end
  (`deferred:quiet_hours`);
- else it is sent again with the same idempotency key (`recovered:resent`).

Staleness (`delivery.staleAfterHours`) is not applied again: the touch was fresh, or sent on purpose, when it was
claimed, and the due-touch sensor requests its recovery as soon as the claim lease has passed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engage_assets.delivery.engine_types import WAIT
from engage_assets.domain.pressure import Decision, PressureState
from resources.channels.base import SendError
from resources.delivery_ledger.base import LedgerRow

if TYPE_CHECKING:
    from engage_assets.delivery.engine_run import EngineRun


def recover(run: EngineRun, program_id: str) -> None:
    """Resolve the program's touches left in `sending` longer than the claim lease, a page at a time."""
    led, cfg = run.e.ledger, run.e.cfg
    now = run.clock()
    for page in led.in_doubt(program_id, now - cfg.claim_lease_s, cfg.page_size):
        contacts = run.e.state.contacts(sorted({r.customer_id for r in page}))
        mine = [r for r in page if led.reclaim(r.touch_key, r.claim_token, run.token, now)]  # else resolved
        unsent = [r for r in mine if not found_at_channel(run, r, contacts.get(r.customer_id))]
        if unsent:
            resend_checked(run, unsent, contacts)


def found_at_channel(run: EngineRun, row: LedgerRow, contact: dict[str, Any] | None) -> bool:
    """Whether the channel finds the touch's idempotency key (then it is marked `sent`, `recovered:found`)."""
    try:
        session = run.session(row.channel)
        found = session.lookup(run.message(row, row.touch_dict(), contact or {}, rendered=None))
    except SendError:
        found = None
    if found is None:
        return False
    run.e.ledger.mark_sent(row.touch_key, run.token, found, run.clock(), reason="recovered:found")
    run.stats.add(row.channel, "sent", "recovered:found")
    run.stats.sent_in.add((row.program_id, row.partition_key))
    run.stats.recovered += 1
    return True


def resend_checked(run: EngineRun, rows: list[LedgerRow], contacts: dict[str, dict[str, Any]]) -> None:
    """Re-check the re-claimed touches no channel found (conditions, consent, suppression list, quiet hours);
    send those that pass again with their idempotency key, settle the others."""
    led, now = run.e.ledger, run.clock()
    touches = {r.touch_key: r.touch_dict() for r in rows}
    with led.transaction() as conn:  # the suppression list, read as a claim's pressure check reads it
        pressure = PressureState.load(led, conn, run.e.policy, now, list(touches.values()), contacts)
    now_dt = datetime.fromtimestamp(now, UTC)
    for row in rows:
        touch, contact = touches[row.touch_key], contacts.get(row.customer_id)
        reason = run.e.state.recheck(touch, now_dt)
        decision = recheck_decision(reason, now, run.e.cfg.wait_s) or pressure.check_claimed(touch, contact)
        if decision.action == "allow" and contact is not None:
            run.stats.recovered += 1
            run.deliver(row, touch, contact, sent_reason="recovered:resent")
        else:
            settle_claimed(run, row, decision)


def recheck_decision(reason: str | None, now: int, wait_s: int) -> Decision | None:
    """What a failed condition re-check means for a claimed touch: a `wait:` reason defers it, any other
    suppresses it; None when the conditions still hold."""
    if not reason:
        return None
    if reason.startswith(WAIT):
        return Decision("defer", f"deferred:{reason[len(WAIT) :]}", now + wait_s)
    return Decision("suppress", reason)


def settle_claimed(run: EngineRun, row: LedgerRow, decision: Decision) -> None:
    """A re-claimed touch that may not go out now: suppressed, or back to `planned` until the deferral ends."""
    led, now, ch = run.e.ledger, run.clock(), row.channel
    if decision.action == "defer" and decision.until is not None:
        if led.mark_retry(row.touch_key, run.token, decision.reason or "deferred", decision.until, now):
            run.stats.add(ch, "deferred", (decision.reason or "").removeprefix("deferred:"))
        return
    reason = decision.reason or "no_contact"
    if led.suppress(None, row.touch_key, reason, now, token=run.token):
        run.stats.add(ch, "suppressed", reason)
