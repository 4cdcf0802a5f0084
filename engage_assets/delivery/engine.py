"""The send loop: due touches → re-check → contact pressure → claim → render → send → record.

Per page of due touches (keyset-paged from the ledger, so memory stays one page whatever the backlog):

1. drop touches whose offer expired (`offer_expired`), re-check each touch's conditions against fresh state
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
at the start of every run, each `sending` touch claimed more than `claim_lease_s` ago is re-claimed under the new
run's token and resolved WITHOUT re-checking conditions or pressure (both passed at claim time, and the message
may already be out):
  a. if the channel can look the idempotency key up (capture server files, outbox rows, call tasks, inbox
     entries) and finds it → `sent` (reason `recovered:found`);
  b. otherwise the message is sent again WITH THE SAME idempotency key → `sent` (reason `recovered:resent`).
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

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from engage_assets.domain.pressure import PressurePolicy, PressureState, address_of
from engage_assets.domain.templates import TemplateError
from resources.channels.base import (
    ChannelSession,
    OutboundMessage,
    PermanentSendError,
    SendError,
    TokenBucket,
    TransientSendError,
)
from resources.delivery_ledger.sqlite import DeliveryLedger, LedgerRow, idempotency_key, key_hash

log = logging.getLogger("engage.delivery")
CRASH_POINTS = ("before_claim", "after_claim", "after_send", "mid_batch")


class ConditionChecker(Protocol):
    def recheck(self, touch: dict[str, Any], now: datetime) -> str | None: ...
    def contacts(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]: ...


class Renderer(Protocol):
    def render(self, touch: dict[str, Any], contact: dict[str, Any]) -> Any: ...


class ChannelFactory(Protocol):
    rate_per_s: float
    burst: int

    def open(self) -> ChannelSession: ...


WAIT = "wait:"  # a recheck reason with this prefix defers the touch instead of suppressing it


@dataclass(frozen=True)
class EngineConfig:
    page_size: int = 500
    claim_lease_s: int = 600
    max_attempts: int = 5
    inline_retries: int = 2
    inline_backoff_s: float = 0.05
    retry_delay_s: int = 300
    max_retry_delay_s: int = 6 * 3600
    outage_after: int = 5
    outage_delay_s: int = 900
    wait_s: int = 3600  # a touch whose recheck says "wait:<why>" is due again this much later
    mark_batch: int = 100  # `sent` marks per ledger transaction on channels that de-duplicate by key
    max_touches: int | None = None  # stop after this many touches were processed (a bounded run)


@dataclass
class DeliveryStats:
    """Counts of what a run did: {(channel, outcome, reason): n}; outcome ∈ sent, suppressed, failed, retry,
    deferred.  Reasons are codes (never an address or a name)."""

    counts: Counter = field(default_factory=Counter)
    recovered: int = 0
    seconds: float = 0.0

    def add(self, channel: str, outcome: str, reason: str | None = None, n: int = 1) -> None:
        self.counts[(channel, outcome, reason or "")] += n

    def total(self, outcome: str | None = None) -> int:
        return sum(n for (_, o, _r), n in self.counts.items() if outcome is None or o == outcome)

    def by_channel(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (ch, outcome, _), n in sorted(self.counts.items()):
            out.setdefault(ch, {}).setdefault(outcome, 0)
            out[ch][outcome] += n
        return out

    def by_reason(self) -> dict[str, int]:
        out: Counter = Counter()
        for (ch, outcome, reason), n in self.counts.items():
            if outcome != "sent" or reason:
                out[f"{ch}/{outcome}/{reason or '-'}"] += n
        return dict(sorted(out.items()))


def _no_checkpoint(point: str) -> None:
    """The default checkpoint hook: production runs do nothing at a checkpoint."""


class DeliveryEngine:
    def __init__(
        self,
        ledger: DeliveryLedger,
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
        self.checkpoint = checkpoint or _no_checkpoint
        self.sleep = sleep

    # -- public ------------------------------------------------------------------------------------------------------
    def run(self, program_ids: Iterable[str], now: int | Callable[[], int]) -> DeliveryStats:
        """Deliver every due touch of the programs as of `now` (an epoch second, or a clock returning one)."""
        clock = now if callable(now) else (lambda t0=int(now), m0=time.monotonic(): t0 + int(time.monotonic() - m0))
        run = _Run(self, clock)
        t0 = time.perf_counter()
        try:
            for program_id in program_ids:
                run.recover(program_id)
                for page in self.ledger.due(program_id, clock(), self.cfg.page_size):
                    run.process_page(page)
                    if self.cfg.max_touches is not None and run.processed >= self.cfg.max_touches:
                        break
        finally:
            run.close()
        run.stats.seconds = time.perf_counter() - t0
        return run.stats


class _Run:
    """The state of one engine run: open sessions, token buckets, channel health, counts."""

    def __init__(self, engine: DeliveryEngine, clock: Callable[[], int]):
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
        bucket = self.buckets[channel]
        with bucket.lock:
            bucket.take()

    # -- recovery ----------------------------------------------------------------------------------------------------
    def recover(self, program_id: str) -> None:
        led = self.e.ledger
        now = self.clock()
        for page in led.in_doubt(program_id, now - self.e.cfg.claim_lease_s, self.e.cfg.page_size):
            contacts = self.e.state.contacts(sorted({r.customer_id for r in page}))
            for row in page:
                if not led.reclaim(row.touch_key, row.claim_token, self.token, now):
                    continue  # another run resolved it first
                touch = row.touch_dict()
                msg = None
                try:
                    session = self.session(row.channel)
                    contact = contacts.get(row.customer_id)
                    msg = self.message(row, touch, contact or {}, rendered=None)
                    found = session.lookup(msg)
                except SendError:
                    found = None
                if found is not None:
                    led.mark_sent(row.touch_key, self.token, found, self.clock(), reason="recovered:found")
                    self.stats.add(row.channel, "sent", "recovered:found")
                    self.stats.recovered += 1
                    continue
                if contacts.get(row.customer_id) is None:
                    led.suppress(None, row.touch_key, "no_contact", self.clock(), token=self.token)
                    self.stats.add(row.channel, "suppressed", "no_contact")
                    continue
                self.stats.recovered += 1
                self.deliver(row, touch, contacts[row.customer_id], sent_reason="recovered:resent")

    # -- the main path -----------------------------------------------------------------------------------------------
    def process_page(self, page: list[LedgerRow]) -> None:
        e, led = self.e, self.e.ledger
        now = self.clock()
        now_dt = datetime.fromtimestamp(now, UTC)
        touches = {r.touch_key: r.touch_dict() for r in page}
        contacts = e.state.contacts(sorted({r.customer_id for r in page}))
        pre: dict[str, str] = {}
        for r in page:
            if r.expires_at is not None and r.expires_at <= now:
                pre[r.touch_key] = "offer_expired"
                continue
            reason = e.state.recheck(touches[r.touch_key], now_dt)
            if reason:
                pre[r.touch_key] = reason
        self.e.checkpoint("before_claim")
        claimed: list[LedgerRow] = []
        with led.transaction() as conn:
            pressure = PressureState.load(
                led, conn, e.policy, now, [touches[r.touch_key] for r in page if r.touch_key not in pre], contacts
            )
            for r in page:
                touch = touches[r.touch_key]
                if r.touch_key in pre:
                    reason = pre[r.touch_key]
                    if reason.startswith(WAIT):  # not yet (e.g. its refund awaits approval): due again later
                        if led.defer(conn, r.touch_key, now + e.cfg.wait_s, f"deferred:{reason[len(WAIT) :]}", now):
                            self.stats.add(r.channel, "deferred", reason[len(WAIT) :])
                    elif led.suppress(conn, r.touch_key, reason, now):
                        self.stats.add(r.channel, "suppressed", reason)
                    continue
                if r.channel in self.down:
                    if led.defer(conn, r.touch_key, now + e.cfg.outage_delay_s, "deferred:provider_unavailable", now):
                        self.stats.add(r.channel, "deferred", "provider_unavailable")
                    continue
                d = pressure.check(touch, contacts.get(r.customer_id))
                if d.action == "suppress":
                    if led.suppress(conn, r.touch_key, d.reason, now):  # type: ignore[arg-type]
                        self.stats.add(r.channel, "suppressed", d.reason)
                elif d.action == "defer":
                    if led.defer(conn, r.touch_key, d.until, d.reason, now):  # type: ignore[arg-type]
                        self.stats.add(r.channel, "deferred", (d.reason or "").removeprefix("deferred:"))
                elif led.claim(conn, r.touch_key, self.token, now):
                    pressure.record(touch)
                    claimed.append(r)
        self.processed += len(page)
        self.e.checkpoint("after_claim")
        prefetch = getattr(e.renderer, "prefetch", None)
        if prefetch is not None and claimed:  # the page's discount codes in one transaction, not one per message
            prefetch([touches[r.touch_key] for r in claimed])
        by_channel: dict[str, list[tuple[LedgerRow, OutboundMessage]]] = {}
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
        except self.e.template_errors as err:  # type: ignore[misc]
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

    def pooled(self, channel: str, n: int) -> bool:
        """Whether `n` messages of the channel go out from its thread pool (`max_connections` > 1: SMTP, SES)."""
        return n > 1 and int(getattr(self.e.channels.get(channel), "max_connections", 1) or 1) > 1

    def send_all(
        self, channel: str, jobs: list[tuple[LedgerRow, OutboundMessage]]
    ) -> Iterator[tuple[LedgerRow, OutboundMessage, tuple[str, Any]]]:
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

    def send_one(self, channel: str, msg: OutboundMessage) -> tuple[str, Any]:
        """One provider call with in-place retries: ("sent", id) | ("transient", err) | ("permanent", err) |
        ("down", None).  Runs on a sender thread; touches only thread-safe state."""
        e, attempt = self.e, 0
        while True:
            if channel in self.down:
                return "down", None
            try:
                session = self.session(channel)
                self.take(channel)
                provider_id = session.send(msg)
            except TransientSendError as err:
                if attempt < e.cfg.inline_retries:
                    e.sleep(e.cfg.inline_backoff_s * (2**attempt))
                    attempt += 1
                    continue
                with self.lock:
                    self.transient_streak[channel] += 1
                    if self.transient_streak[channel] >= e.cfg.outage_after and channel not in self.down:
                        self.down.add(channel)
                        log.warning(
                            "channel %s looks down after %d consecutive transient errors (%s); its touches stay due",
                            channel,
                            self.transient_streak[channel],
                            err.code,
                        )
                return "transient", err
            except PermanentSendError as err:
                return "permanent", err
            with self.lock:
                self.transient_streak[channel] = 0
            return "sent", provider_id

    def record(
        self,
        row: LedgerRow,
        msg: OutboundMessage,
        contact: dict[str, Any],
        outcome: tuple[str, Any],
        sent_reason: str | None = None,
    ) -> None:
        kind, value = outcome
        e, led, ch, now = self.e, self.e.ledger, row.channel, self.clock()
        if kind == "sent":
            e.checkpoint("after_send")
            self.stats.add(ch, "sent", sent_reason)
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
