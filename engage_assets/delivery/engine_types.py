"""The delivery engine's settings, checkpoints and the interfaces of what it is given (see `engine`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engage_assets.domain.pressure import PressurePolicy
from resources.channels.base import ChannelSession
from resources.delivery_ledger.base import DeliveryLedgerBackend, LedgerRow

CRASH_POINTS = ("before_claim", "after_claim", "after_send", "mid_batch")
WAIT = "wait:"  # a recheck reason with this prefix defers the touch instead of suppressing it
STALE = "stale:"  # a pre-check reason with this prefix records the touch `stale` (planned too long ago to send)


class ConditionChecker(Protocol):
    """Fresh customer state: a touch's conditions re-checked at send time, and the contacts to send to."""

    def recheck(self, touch: dict[str, Any], now: datetime) -> str | None: ...
    def contacts(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]: ...


class Renderer(Protocol):
    """Turns a touch and its contact into the message's subject and text/html."""

    def render(self, touch: dict[str, Any], contact: dict[str, Any]) -> Any: ...


class ChannelFactory(Protocol):
    """A channel resource: its send rate and how to open a session."""

    # Read-only: the channel resources are frozen pydantic models.
    @property
    def rate_per_s(self) -> float: ...

    @property
    def burst(self) -> int: ...

    def open(self) -> ChannelSession: ...


@dataclass(frozen=True)
class EngineConfig:
    """Paging, leases, retries, outage detection and batching of one engine (see the engine's docstring)."""

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
    # programId -> seconds: a touch planned (dueAt) longer than this before the send clock is recorded `stale`, never
    # sent (a program absent here: never stale).  From each program's `delivery.staleAfterHours`.
    stale_after_s: Mapping[str, int] = field(default_factory=dict)
    # Send stale touches anyway (an explicit option): the program's `stale` touches are planned again first.
    send_stale: bool = False
    # (programId, channelId) -> the channel's `priority` (1 first): touches due at the same time are claimed in this
    # order, so where contact pressure leaves room for fewer touches than are due, the higher-priority channel's go.
    channel_priority: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def claim_order(self, rows: list[LedgerRow]) -> list[LedgerRow]:
        """`rows` by due time, then channel priority (stable: otherwise as the ledger listed them)."""
        last = 1 << 30  # a channel the config no longer names goes after the named ones
        return sorted(rows, key=lambda r: (r.due_at, self.channel_priority.get((r.program_id, r.channel_id), last)))


class EngineParts(Protocol):
    """What a run reads from its engine, at run time (tests and the crash trials swap the ledger or the
    checkpoint hook of a built engine)."""

    ledger: DeliveryLedgerBackend
    channels: Mapping[str, ChannelFactory]
    state: ConditionChecker
    renderer: Renderer
    policy: PressurePolicy
    cfg: EngineConfig
    channel_configs: Mapping[tuple[str, str], dict[str, Any]]
    template_errors: tuple[type[BaseException], ...]
    checkpoint: Callable[[str], None]
    sleep: Callable[[float], None]
