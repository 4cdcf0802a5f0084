"""What the outcome webhooks do with a provider's report (the routes: `engage_assets.serving.routes.webhooks`).

For each `Outcome` (`engage_assets.domain.outcomes`):
1. its touch is looked up in the delivery ledger by the provider's message id (`find_sent`);
2. its consequences are applied, all idempotent, so a retried report applies them again harmlessly:
   - a permanent bounce, a complaint, a permanently failed SMS → each address it names goes on the channel's
     suppression list (`add_suppression`, keyed hashes; the first reason stands);
   - an unsubscribe → the touch's customer's opt-out of the channel (of all marketing for an unsubscribe-all), read
     at send time (`CustomerState.use_opt_outs`); when the touch is unknown, its addresses go on the suppression list
     instead (`unsubscribed`), so they are not written to again either way;
3. it is recorded under its event id, once (`OutcomeStore.record`; a retry answers `duplicate`), joined to its touch
   or kept aside with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from engage_assets.domain.outcomes import Outcome
from engage_assets.serving.sns import SnsVerifier
from resources.delivery_ledger.base import DeliveryLedgerBackend, idempotency_key
from resources.outcomes.base import MARKETING, OutcomeStore, TouchRef

MAX_BODY = 256 * 1024  # SNS messages (and a batch of receipts) are at most 256 KiB


@dataclass
class Webhooks:
    """What the outcome webhooks need: the outcome store, the delivery ledger (touches, suppression list), the SNS
    verifier (None: the SNS route answers 503), the clock."""

    outcomes: OutcomeStore
    ledger: DeliveryLedgerBackend
    sns: SnsVerifier | None = None
    clock: Callable[[], float] = time.time


def suppression_reason(outcome: Outcome) -> str | None:
    """Why the outcome's addresses go on the suppression list, or None (they do not)."""
    if outcome.kind == "complained":
        return "complaint"
    if outcome.kind == "bounced" and outcome.permanent:
        return f"bounce:{outcome.detail or 'permanent'}"[:80]
    if outcome.kind == "failed" and outcome.permanent:
        return "invalid_address"
    return None


def apply_outcome(hooks: Webhooks, outcome: Outcome) -> bool:
    """Apply and record one outcome (module docstring); False when it was recorded before (a provider's retry)."""
    now = int(hooks.clock())
    row = hooks.ledger.find_sent(outcome.provider_id)
    touch = None if row is None else TouchRef(idempotency_key(row.touch_key), row.program_id, row.customer_id)
    unmatched = None
    if row is not None and row.channel != outcome.channel:
        touch, unmatched = None, f"the provider id belongs to a {row.channel} touch"
    reason = suppression_reason(outcome)
    if reason is not None:
        for address in outcome.addresses:
            hooks.ledger.add_suppression(outcome.channel, address, reason, now)
    if outcome.kind == "unsubscribed":
        if touch is not None:
            hooks.outcomes.add_opt_out(
                touch.customer_id, MARKETING if outcome.unsubscribe_all else outcome.channel, now
            )
        else:
            for address in outcome.addresses:
                hooks.ledger.add_suppression(outcome.channel, address, "unsubscribed", now)
    return hooks.outcomes.record(outcome, touch, now, unmatched)
