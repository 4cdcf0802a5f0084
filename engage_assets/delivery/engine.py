"""The send loop: due touches → re-check → contact pressure → claim → render → send → record.

`DeliveryEngine` is here; one run's steps are `engine_run.EngineRun`, its settings and interfaces `engine_types`,
its counts `stats.DeliveryStats` (all importable from this module).

Per page of due touches (keyset-paged from the ledger, so memory stays one page whatever the backlog):

1. record `stale` (reason `older_than:<hours>h`, never sent) the touches whose planned send time lies further
   before the send clock than their program's `delivery.staleAfterHours` (`EngineConfig.stale_after_s`): a
   backfill of an old partition contacts no one.  A run with `send_stale` sends them anyway, and first plans the
   program's `stale` touches again (`reopen_stale`), so the option works after the sensor's runs marked them;
   drop touches whose offer expired (`offer_expired`), re-check each touch's conditions against fresh state
   (`CustomerState.recheck`: converted, opted out since, cart no longer abandoned …) → `suppressed` with its reason;
2. in ONE ledger transaction: contact pressure (`pressure.PressureState`: opt-outs, invalid address, suppression
   list, program cap, global cap → suppressed; quiet hours → deferred) and the claim (planned → sending, token,
   time) of every touch allowed, so no two processes can spend the same customer's slot;
3. for each claimed touch: render (`TemplateRenderer`; a template error fails that touch only), take a token from
   the channel's bucket, send with the idempotency key, record `sent` (or retry / failed / suppressed).

Errors: a transient error is retried in place `inline_retries` times with backoff, then the touch goes back to
`planned` with `next_attempt_at` (exponential, `retry_delay_s` · 2^(attempts-1)), and to `failed` after
`max_attempts`.  After `outage_after` consecutive transient errors on one channel the channel counts as down for
the rest of the run: its claimed touches go back to planned and its due touches are deferred by
`outage_delay_s` without a send — a later run picks them up.  A permanent error fails the touch (a refused
address also goes on the suppression list).

RECOVERY RULE (touches left in `sending` by a process that died between its claim and recording the outcome):
at the start of every run (`engage_assets.delivery.recovery`), each `sending` touch claimed more than
`claim_lease_s` ago is re-claimed under the new run's token and resolved (the due-touch sensor launches a run
for such touches by itself, `sensors.due_touches`):
  a. if the channel can look the idempotency key up (capture server files, outbox rows, call tasks, inbox
     entries) and finds it → `sent` (reason `recovered:found`), with no re-check: the message is out;
  b. otherwise it is re-checked before it goes out again: its conditions (erased, opted out, converted …) →
     `suppressed`; consent, address and suppression list → `suppressed`; quiet hours → back to `planned`, due
     when they end (the caps are not re-applied: its own claim counted in them);
  c. else the message is sent again WITH THE SAME idempotency key → `sent` (reason `recovered:resent`).
     Channels that de-duplicate by that key (the capture server, the outbox, the engagement store) turn a
     duplicate into a no-op, so delivery is exactly-once end to end.  SES and SNS do not de-duplicate: there the
     in-doubt window is the messages between one provider call and its `sent` mark (one message per crashed
     process: for them marks are written right after each call), and the key travels as a header / message
     attribute so a downstream consumer can drop the duplicate.
Because a duplicate is a no-op on the de-duplicating channels, their `sent` marks are written in batches (up to
`mark_batch` per ledger transaction, and at the end of every page): a crash leaves at most that many touches in
doubt, which the rule above resolves by lookup.  One transaction per batch instead of one per message is most of
the ledger's cost per send.
The lease (default 10 minutes) keeps a run from taking over the claims of another run that is still alive.

Checkpoints (`CRASH_POINTS`): the engine calls its `checkpoint(point)` hook (a no-op by default) at
`before_claim` (a page re-checked, nothing claimed), `after_claim` (a page claimed, nothing sent),
`after_send` (a provider accepted the n-th message, its `sent` mark not written) or `mid_batch` (the marks of
the first n messages of the run written, the rest of the page still claimed or sent but unmarked).  The crash
trials (`engage_assets.demo.reliability`) install a hook that SIGKILLs the process at the n-th pass of one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engage_assets.delivery.engine_run import EngineRun
from engage_assets.delivery.engine_types import (
    CRASH_POINTS,
    WAIT,
    ChannelFactory,
    ConditionChecker,
    EngineConfig,
    EngineParts,
    Renderer,
)
from engage_assets.delivery.recovery import recover
from engage_assets.delivery.stats import DeliveryStats
from engage_assets.domain.pressure import PressurePolicy
from engage_assets.domain.templates import TemplateError
from resources.delivery_ledger.base import DeliveryLedgerBackend

__all__ = [
    "CRASH_POINTS",
    "WAIT",
    "ChannelFactory",
    "ConditionChecker",
    "DeliveryEngine",
    "DeliveryStats",
    "EngineConfig",
    "EngineParts",
    "EngineRun",
    "Renderer",
    "no_checkpoint",
    "send_clock",
]


def no_checkpoint(point: str) -> None:
    """The default checkpoint hook: production runs do nothing at a checkpoint."""


def send_clock(now: int | Callable[[], int]) -> Callable[[], int]:
    """A run's clock: `now` itself when it is one, else `now` advancing with the monotonic clock."""
    if callable(now):
        return now
    t0, m0 = int(now), time.monotonic()
    return lambda: t0 + int(time.monotonic() - m0)


class DeliveryEngine:
    """Delivers due touches: what it is given (ledger, channels, state, renderer, pressure policy) and `run`."""

    def __init__(
        self,
        ledger: DeliveryLedgerBackend,
        channels: Mapping[str, ChannelFactory],
        state: ConditionChecker,
        renderer: Renderer,
        policy: PressurePolicy | None = None,
        config: EngineConfig | None = None,
        channel_configs: Mapping[tuple[str, str], dict[str, Any]] | None = None,
        template_errors: tuple[type[BaseException], ...] | None = None,
        checkpoint: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.ledger = ledger
        self.channels = channels
        self.state = state
        self.renderer = renderer
        self.policy = policy or PressurePolicy()
        self.cfg = config or EngineConfig()
        self.channel_configs = channel_configs or {}
        self.template_errors = (TemplateError,) if template_errors is None else template_errors
        self.checkpoint = checkpoint or no_checkpoint
        self.sleep = sleep

    def run(self, program_ids: Iterable[str], now: int | Callable[[], int]) -> DeliveryStats:
        """Deliver every due touch of the programs as of `now` (an epoch second, or a clock returning one)."""
        clock = send_clock(now)
        run = EngineRun(self, clock)
        t0 = time.perf_counter()
        try:
            for program_id in program_ids:
                recover(run, program_id)
                if self.cfg.send_stale:  # the explicit option: touches an earlier run recorded stale go out too
                    run.stats.reopened += self.ledger.reopen_stale(program_id, clock())
                for page in self.ledger.due(program_id, clock(), self.cfg.page_size):
                    run.process_page(page)
                    if self.cfg.max_touches is not None and run.processed >= self.cfg.max_touches:
                        break
        finally:
            run.close()
        run.stats.seconds = time.perf_counter() - t0
        return run.stats
