"""One run of the delivery engine: its sessions, token buckets, channel health, batched marks and counts.

The steps (recovery, a page's re-check → pressure + claim → render → send → record) are described in
`engage_assets.delivery.engine`'s docstring; the recovery of in-doubt touches is `engage_assets.delivery.recovery`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from engage_assets.delivery.engine_types import STALE, WAIT, EngineParts
from engage_assets.delivery.stats import DeliveryStats
from engage_assets.domain.pressure import Decision, PressureState, address_of
from resources.channels.base import (
    ChannelSession,
    OutboundMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from resources.channels.throttle import TokenBucket
from resources.delivery_ledger.base import LedgerRow, idempotency_key, key_hash

log = logging.getLogger("engage.delivery")

Outcome = tuple[str, Any]  # ("sent", provider id) | ("transient", err) | ("permanent", err) | ("down", None)
Job = tuple[LedgerRow, OutboundMessage]


class EngineRun:
    """The state of one engine run: open sessions, token buckets, channel health, counts."""

    def __init__(self, engine: EngineParts, clock: Callable[[], int]):
        self.e = engine
        self.clock = clock
        self.token = uuid.uuid4().hex
        self.sessions: dict[tuple[str, int], ChannelSession] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.pools: dict[str, ThreadPoolExecutor] = {}
        self.lock = threading.Lock()
        self.transient_streak: Counter = Counter()
        self.down: set[str] = set()
        self.stats = DeliveryStats()
        self.processed = 0
        self.dedupes: dict[str, bool] = {}  # channel -> its sessions drop a repeated idempotency key
        self.marks: list[tuple[str, str, str | None]] = []  # (touch_key, provider_id, reason) not yet in the ledger

    def close(self) -> None:
        """Finish the pooled sends, write the pending marks, close every session."""
        for pool in self.pools.values():
            pool.shutdown(wait=True)
        self.flush_marks()
        for s in self.sessions.values():
            try:
                s.close()
            except Exception:  # noqa: BLE001 - closing after a failure must not hide it
                log.warning("closing a channel session failed", exc_info=True)

    def session(self, channel: str) -> ChannelSession:
        """This thread's session of the channel (an SMTP connection is used by one thread at a time)."""
        key = (channel, threading.get_ident())
        session = self.sessions.get(key)
        if session is None:
            factory = self.e.channels.get(channel)
            if factory is None:
                raise PermanentSendError(f"no_channel:{channel}")
            with self.lock:
                session = self.sessions[key] = factory.open()
                self.dedupes[channel] = bool(getattr(session, "dedupes_by_key", False))
                if channel not in self.buckets:
                    self.buckets[channel] = TokenBucket(factory.rate_per_s, factory.burst)
        return session

    def take(self, channel: str) -> None:
        """Wait for the channel's send rate to allow one more message."""
        bucket = self.buckets[channel]
        with bucket.lock:
            bucket.take()

    # -- the main path -----------------------------------------------------------------------------------------------
    def process_page(self, page: list[LedgerRow]) -> None:
        """Re-check, pressure + claim (one transaction), render, send and record one page of due touches."""
        now = self.clock()
        touches = {r.touch_key: r.touch_dict() for r in page}
        contacts = self.e.state.contacts(sorted({r.customer_id for r in page}))
        pre = self.precheck(page, touches, datetime.fromtimestamp(now, UTC), now)
        self.e.checkpoint("before_claim")
        claimed = self.claim_page(page, touches, contacts, pre, now)
        self.processed += len(page)
        self.e.checkpoint("after_claim")
        self.send_claimed(claimed, touches, contacts)

    def precheck(
        self, page: list[LedgerRow], touches: dict[str, dict[str, Any]], now_dt: datetime, now: int
    ) -> dict[str, str]:
        """{touch_key: reason} of the touches not to send now: offer expired, or a condition no longer holds."""
        pre: dict[str, str] = {}
        for r in page:
            stale = self.stale_reason(r, now)
            if stale:
                pre[r.touch_key] = stale
                continue
            if r.expires_at is not None and r.expires_at <= now:
                pre[r.touch_key] = "offer_expired"
                continue
            reason = self.e.state.recheck(touches[r.touch_key], now_dt)
            if reason:
                pre[r.touch_key] = reason
        return pre

    def claim_page(
        self,
        page: list[LedgerRow],
        touches: dict[str, dict[str, Any]],
        contacts: dict[str, dict[str, Any]],
        pre: dict[str, str],
        now: int,
    ) -> list[LedgerRow]:
        """In ONE ledger transaction: settle the pre-checked touches, apply contact pressure, claim the rest."""
        e, led = self.e, self.e.ledger
        claimed: list[LedgerRow] = []
        with led.transaction() as conn:
            allowed = [touches[r.touch_key] for r in page if r.touch_key not in pre]
            pressure = PressureState.load(led, conn, e.policy, now, allowed, contacts)
            for r in e.cfg.claim_order(page):  # the config's channel priority decides who gets a capped slot
                touch = touches[r.touch_key]
                if r.touch_key in pre:
                    self.settle_prechecked(conn, r, pre[r.touch_key], now)
                elif r.channel in self.down:
                    if led.defer(conn, r.touch_key, now + e.cfg.outage_delay_s, "deferred:provider_unavailable", now):
                        self.stats.add(r.channel, "deferred", "provider_unavailable")
                elif self.apply_pressure(conn, r, pressure.check(touch, contacts.get(r.customer_id)), now):
                    pressure.record(touch)
                    claimed.append(r)
        return claimed

    def stale_reason(self, row: LedgerRow, now: int) -> str | None:
        """`stale:older_than:<hours>h` when the touch's planned send time is further in the past than its program
        allows (and the run was not told to send stale touches); else None."""
        window = self.e.cfg.stale_after_s.get(row.program_id)
        if window is None or self.e.cfg.send_stale or now - row.due_at <= window:
            return None
        return f"{STALE}older_than:{window / 3600:g}h"

    def settle_prechecked(self, conn: Any, row: LedgerRow, reason: str, now: int) -> None:
        """A `stale:` reason records the touch `stale`; a `wait:` reason defers it (e.g. its refund awaits
        approval: due again later); any other suppresses it."""
        led = self.e.ledger
        if reason.startswith(STALE):
            why = reason[len(STALE) :]
            if led.mark_stale(conn, row.touch_key, why, now):
                self.stats.add(row.channel, "stale", why)
        elif reason.startswith(WAIT):
            why = reason[len(WAIT) :]
            if led.defer(conn, row.touch_key, now + self.e.cfg.wait_s, f"deferred:{why}", now):
                self.stats.add(row.channel, "deferred", why)
        elif led.suppress(conn, row.touch_key, reason, now):
            self.stats.add(row.channel, "suppressed", reason)

    def apply_pressure(self, conn: Any, row: LedgerRow, d: Decision, now: int) -> bool:
        """Suppress, defer or claim the touch as contact pressure decided; whether it was claimed."""
        led = self.e.ledger
        if d.action == "suppress":
            if led.suppress(conn, row.touch_key, d.reason, now):  # type: ignore[arg-type]
                self.stats.add(row.channel, "suppressed", d.reason)
            return False
        if d.action == "defer":
            if led.defer(conn, row.touch_key, d.until, d.reason, now):  # type: ignore[arg-type]
                self.stats.add(row.channel, "deferred", (d.reason or "").removeprefix("deferred:"))
            return False
        return led.claim(conn, row.touch_key, self.token, now)

    def send_claimed(
        self, claimed: list[LedgerRow], touches: dict[str, dict[str, Any]], contacts: dict[str, dict[str, Any]]
    ) -> None:
        """Render the claimed touches, send them channel by channel and record every outcome."""
        prefetch = getattr(self.e.renderer, "prefetch", None)
        if prefetch is not None and claimed:  # the page's discount codes in one transaction, not one per message
            prefetch([touches[r.touch_key] for r in claimed])
        by_channel: dict[str, list[Job]] = {}
        for r in claimed:
            msg = self.prepare(r, touches[r.touch_key], contacts[r.customer_id])
            if msg is not None:
                by_channel.setdefault(r.channel, []).append((r, msg))
        # Every channel's sends start now: pooled channels (SMTP) send on their threads while this thread sends the
        # inline ones (outbox, store) and records their outcomes; the pooled outcomes are recorded last.
        streams = [
            (self.pooled(channel, len(jobs)), self.send_all(channel, jobs)) for channel, jobs in by_channel.items()
        ]
        for _, stream in sorted(streams, key=lambda s: s[0]):
            for r, msg, outcome in stream:
                self.record(r, msg, contacts[r.customer_id], outcome)
        self.flush_marks()

    def message(self, row: LedgerRow, touch: dict[str, Any], contact: dict[str, Any], rendered: Any) -> OutboundMessage:
        """The message of a touch, with its idempotency key (`rendered` None: for a lookup by key only)."""
        return OutboundMessage(
            idempotency_key=idempotency_key(row.touch_key),
            touch_key_hash=key_hash(row.touch_key),
            program_id=row.program_id,
            customer_id=row.customer_id,
            channel=row.channel,
            to=address_of(row.channel, contact),
            subject=getattr(rendered, "subject", None),
            text=getattr(rendered, "text", "") or "",
            html=getattr(rendered, "html", None),
            touch=touch,
            channel_config=self.e.channel_configs.get((row.program_id, row.channel_id), {}),
            now=self.clock(),
        )

    def prepare(self, row: LedgerRow, touch: dict[str, Any], contact: dict[str, Any]) -> OutboundMessage | None:
        """Render a claimed touch; a template error fails this touch only (reason `template:<why>`)."""
        try:
            rendered = self.e.renderer.render(touch, contact)
        except self.e.template_errors as err:
            reason = f"template:{getattr(err, 'reason', None) or type(err).__name__}"
            self.e.ledger.mark_failed(row.touch_key, self.token, reason, self.clock())
            self.stats.add(row.channel, "failed", reason)
            return None
        return self.message(row, touch, contact, rendered)

    def deliver(
        self, row: LedgerRow, touch: dict[str, Any], contact: dict[str, Any], sent_reason: str | None = None
    ) -> None:
        """Render, send and record one claimed touch (the recovery path)."""
        msg = self.prepare(row, touch, contact)
        if msg is not None:
            for r, m, outcome in self.send_all(row.channel, [(row, msg)]):
                self.record(r, m, contact, outcome, sent_reason)

    # -- sending -----------------------------------------------------------------------------------------------------
    def pooled(self, channel: str, n: int) -> bool:
        """Whether `n` messages of the channel go out from its thread pool (`max_connections` > 1: SMTP, SES)."""
        return n > 1 and int(getattr(self.e.channels.get(channel), "max_connections", 1) or 1) > 1

    def send_all(self, channel: str, jobs: list[Job]) -> Iterator[tuple[LedgerRow, OutboundMessage, Outcome]]:
        """Send a page's messages of one channel; iterate for the outcomes, in order.  A pooled channel's sends are
        submitted at once to its pool, one session per thread; the others are sent as the iterator is consumed.
        The ledger is written only by the consuming thread."""
        if not self.pooled(channel, len(jobs)):
            return ((r, msg, self.send_one(channel, msg)) for r, msg in jobs)
        if channel not in self.pools:
            workers = int(getattr(self.e.channels.get(channel), "max_connections", 1))
            self.pools[channel] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"send-{channel}")
        results = self.pools[channel].map(lambda job: self.send_one(channel, job[1]), jobs)
        return ((r, msg, outcome) for (r, msg), outcome in zip(jobs, results, strict=False))

    def send_one(self, channel: str, msg: OutboundMessage) -> Outcome:
        """One provider call with in-place retries: ("sent", id) | ("transient", err) | ("permanent", err) |
        ("down", None).  Runs on a sender thread; touches only thread-safe state.  A transient error is retried
        `inline_retries` times after `inline_backoff_s`, doubling (tenacity, with the engine's `sleep`)."""
        e = self.e

        def attempt() -> Outcome:
            if channel in self.down:
                return "down", None
            session = self.session(channel)
            self.take(channel)
            return "sent", session.send(msg)

        retrying = Retrying(
            retry=retry_if_exception_type(TransientSendError),
            stop=stop_after_attempt(e.cfg.inline_retries + 1),
            wait=wait_exponential(multiplier=e.cfg.inline_backoff_s, min=0),
            sleep=e.sleep,
            reraise=True,
        )
        try:
            outcome = retrying(attempt)
        except TransientSendError as err:
            self.note_transient(channel, err)
            return "transient", err
        except PermanentSendError as err:
            return "permanent", err
        if outcome[0] == "sent":
            with self.lock:
                self.transient_streak[channel] = 0
        return outcome

    def note_transient(self, channel: str, err: SendError) -> None:
        """Count a transient error that outlived its in-place retries; after `outage_after` in a row the channel
        counts as down for the rest of the run."""
        with self.lock:
            self.transient_streak[channel] += 1
            if self.transient_streak[channel] >= self.e.cfg.outage_after and channel not in self.down:
                self.down.add(channel)
                log.warning(
                    "channel %s looks down after %d consecutive transient errors (%s); its touches stay due",
                    channel,
                    self.transient_streak[channel],
                    err.code,
                )

    # -- recording ---------------------------------------------------------------------------------------------------
    def record(
        self,
        row: LedgerRow,
        msg: OutboundMessage,
        contact: dict[str, Any],
        outcome: Outcome,
        sent_reason: str | None = None,
    ) -> None:
        """Write a send's outcome to the ledger (a de-duplicating channel's `sent` marks are batched)."""
        kind, value = outcome
        e, led, ch, now = self.e, self.e.ledger, row.channel, self.clock()
        if kind == "sent":
            e.checkpoint("after_send")
            self.stats.add(ch, "sent", sent_reason)
            self.stats.sent_in.add((row.program_id, row.partition_key))
            if self.dedupes.get(ch):  # an unmarked message is found again by lookup: batch the marks
                self.marks.append((row.touch_key, value, sent_reason))
                if len(self.marks) >= e.cfg.mark_batch:
                    self.flush_marks()
                return
            led.mark_sent(row.touch_key, self.token, value, now, reason=sent_reason)
            e.checkpoint("mid_batch")
        elif kind == "down":
            led.mark_retry(row.touch_key, self.token, "provider_unavailable", now + e.cfg.outage_delay_s, now)
            self.stats.add(ch, "retry", "provider_unavailable")
        elif kind == "transient":
            self._transient(row, value)
        else:
            self._permanent(row, contact, value)

    def flush_marks(self) -> None:
        """Write the batched `sent` marks in one ledger transaction."""
        if not self.marks:
            return
        marks, self.marks = self.marks, []
        self.e.ledger.mark_sent_many(marks, self.token, self.clock())
        for _ in marks:
            self.e.checkpoint("mid_batch")

    def _transient(self, row: LedgerRow, err: SendError) -> None:
        e, ch, now = self.e, row.channel, self.clock()
        attempts = row.attempts + 1  # the claim counted this attempt
        if attempts >= e.cfg.max_attempts:
            e.ledger.mark_failed(row.touch_key, self.token, f"retries_exhausted:{err.code}", now)
            self.stats.add(ch, "failed", f"retries_exhausted:{err.code}")
            return
        delay = min(e.cfg.retry_delay_s * 2 ** (attempts - 1), e.cfg.max_retry_delay_s)
        if ch in self.down:
            delay = max(delay, e.cfg.outage_delay_s)
        e.ledger.mark_retry(row.touch_key, self.token, f"retry:{err.code}", now + delay, now)
        self.stats.add(ch, "retry", err.code)

    def _permanent(self, row: LedgerRow, contact: dict[str, Any], err: PermanentSendError) -> None:
        led, ch, now = self.e.ledger, row.channel, self.clock()
        addr = address_of(ch, contact)
        if err.bounce and addr:
            led.add_suppression(ch, addr, f"bounce:{err.code}", now)
        if err.suppress or err.bounce:
            reason = f"{'bounce' if err.bounce else 'provider'}:{err.code}"
            led.suppress(None, row.touch_key, reason, now, token=self.token)
            self.stats.add(ch, "suppressed", reason)
        else:
            led.mark_failed(row.touch_key, self.token, f"permanent:{err.code}", now)
            self.stats.add(ch, "failed", f"permanent:{err.code}")
        log.info("touch %s: permanent %s error %s", key_hash(row.touch_key), ch, err.code)
