"""Contact pressure: one set of rules over every program and channel, decided at send time.

The history it reads is the delivery ledger itself (every touch claimed or sent, with its time), so the check and
the claim it allows commit in one ledger transaction: two delivery processes can never both spend a customer's
last slot.  A touch is, in this order:

1. suppressed — no contact record (`no_contact`), marketing opt-out (`opted_out:marketing`), channel opt-out
   (`opted_out:<channel>`), an invalid address (`invalid_address:<channel>`), an address on the suppression list
   (`suppression_list:<why>` — bounces, complaints, invalid addresses), the program's cap (`program_cap`:
   from the program's `frequency-cap` filter, at most N distinct subjects per customer in its window), or the
   global cap (`global_cap`: at most `global_cap` touches on counted channels per customer per `global_window_days`);
2. deferred — inside the customer's local quiet hours on a quiet-hours channel: it stays planned, due at the end of
   the quiet window (reason `deferred:quiet_hours`);
3. allowed — then claimed in the same transaction, and counted for the customer's later touches.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engage_assets.domain import channels as registry
from engage_assets.domain.config import ProgramBase

EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
PHONE_RE = re.compile(r"^\+[1-9]\d{7,14}$")  # E.164
# From the channel registry: channel type → opt-in column, → address column.
OPT_IN_FIELD = registry.consent_columns()
ADDRESS_FIELD = registry.address_columns()
# How an address column's value must look (a column without a pattern: any non-empty value).
ADDRESS_PATTERNS: dict[str, re.Pattern[str]] = {"email": EMAIL_RE, "phone": PHONE_RE}


@dataclass(frozen=True)
class ProgramCap:
    max_subjects: int
    window_days: int


def program_cap(program: ProgramBase) -> ProgramCap | None:
    """The program's own contact cap, from its `frequency-cap` filter: at most N subjects per customer per window.

    The filter enforces the cap on offers when the audience is built; delivery enforces it again at send time,
    across partitions whose touches are still due (a backfill, a re-plan, an overlapping week).
    """
    for f in program.filterChain:
        if f.filterId != "frequency-cap":
            continue
        p = f.parameters
        if p.get("maxOffersPerQuarter"):
            return ProgramCap(int(p["maxOffersPerQuarter"]), 91)
        if p.get("maxRefundsPerYear"):
            return ProgramCap(int(p["maxRefundsPerYear"]), 365)
        if p.get("maxWinBackAttempts"):
            return ProgramCap(int(p["maxWinBackAttempts"]), 365)
    return None


@dataclass(frozen=True)
class PressurePolicy:
    global_cap: int = 5
    global_window_days: int = 7
    counted_channels: frozenset[str] = registry.counted_channels()  # the registry's: in-app interrupts no one
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    quiet_channels: frozenset[str] = registry.quiet_hours_channels()  # the registry's: calls wait for working hours
    default_time_zone: str = "UTC"
    program_caps: dict[str, ProgramCap] = field(default_factory=dict)

    @property
    def lookback_s(self) -> int:
        days = max([self.global_window_days, *(c.window_days for c in self.program_caps.values())])
        return days * 86_400


@dataclass(frozen=True)
class Decision:
    action: str  # "allow" | "suppress" | "defer"
    reason: str | None = None
    until: int | None = None


ALLOW = Decision("allow")


def normalize_address(address: str) -> str:
    """The form of an address the suppression list compares (trimmed, lower-cased)."""
    return address.strip().lower()


def address_hash(address: str, key: bytes) -> str:
    """Suppression-list key of an address: HMAC-SHA256 under the deployment's secret `key` of its normalized form.
    The list never stores a raw e-mail or phone number, nor a plain hash of one: a SHA-256 of a phone number is
    reversed by hashing every number of the country's plan (10^10 hashes: minutes on a GPU); without the key, a
    stolen list reveals nothing."""
    return hmac.new(key, normalize_address(address).encode(), hashlib.sha256).hexdigest()


def legacy_address_hash(address: str) -> str:
    """The plain SHA-256 the suppression list kept before it was keyed (version 1): read only to migrate an entry."""
    return hashlib.sha256(normalize_address(address).encode()).hexdigest()


class ContactHistory(Protocol):
    """What pressure reads from a delivery ledger inside its claiming transaction (`conn`: that ledger's handle)."""

    def contacts_since(
        self, conn: Any, customer_ids: Iterable[str], since: int
    ) -> Iterable[tuple[str, str, str, str, int]]: ...

    def suppressed_addresses(self, conn: Any, channel: str, addresses: Iterable[str]) -> dict[str, str]:
        """{normalized address: reason} of the given addresses on the channel's suppression list."""
        ...


class PressureState:
    """The recent contacts of one batch's customers, loaded inside the claiming transaction and kept current as
    touches of the batch are allowed."""

    def __init__(self, policy: PressurePolicy, now: int):
        self.policy = policy
        self.now = now
        self.counted: dict[str, list[int]] = defaultdict(list)
        self.subjects: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self.suppressed: dict[tuple[str, str], str] = {}

    @classmethod
    def load(
        cls,
        ledger: ContactHistory,
        conn: Any,
        policy: PressurePolicy,
        now: int,
        touches: list[dict[str, Any]],
        contacts: dict[str, dict[str, Any]],
    ) -> PressureState:
        state = cls(policy, now)
        for cust, program, subject, channel, at in ledger.contacts_since(
            conn, (t["customerId"] for t in touches), now - policy.lookback_s
        ):
            state._add(cust, program, subject, channel, at)
        by_channel: dict[str, set[str]] = defaultdict(set)
        for t in touches:
            addr = address_of(t["channel"], contacts.get(t["customerId"]))
            if addr:
                by_channel[t["channel"]].add(addr)
        for channel, addrs in by_channel.items():
            for addr, reason in ledger.suppressed_addresses(conn, channel, addrs).items():
                state.suppressed[(channel, normalize_address(addr))] = reason
        return state

    def _add(self, cust: str, program: str, subject: str, channel: str, at: int) -> None:
        if channel in self.policy.counted_channels:
            self.counted[cust].append(at)
        prev = self.subjects[(cust, program)].get(subject)
        self.subjects[(cust, program)][subject] = at if prev is None else max(prev, at)

    def record(self, touch: dict[str, Any]) -> None:
        """Count an allowed (claimed) touch for the rest of the batch."""
        self._add(touch["customerId"], touch["programId"], str(touch["subjectId"]), touch["channel"], self.now)

    def check(self, touch: dict[str, Any], contact: dict[str, Any] | None) -> Decision:
        """The decision for a touch about to be claimed: consent, address and suppression list, the program's and
        the global cap, then quiet hours (the module docstring's order)."""
        return self.consent(touch, contact) or self.caps(touch) or self.quiet(touch, contact)

    def check_claimed(self, touch: dict[str, Any], contact: dict[str, Any] | None) -> Decision:
        """The decision for a touch already claimed that is about to be sent again (the engine's recovery):
        consent, address and suppression list, then quiet hours.  Not the caps: its own claim counted in them."""
        return self.consent(touch, contact) or self.quiet(touch, contact)

    def consent(self, touch: dict[str, Any], contact: dict[str, Any] | None) -> Decision | None:
        """Suppressed for want of a contact, consent or a deliverable address, or for a listed address; else None."""
        ch = touch["channel"]
        if contact is None:
            return Decision("suppress", "no_contact")
        if _truthy(contact.get("marketing_opt_out")):
            return Decision("suppress", "opted_out:marketing")
        opt = OPT_IN_FIELD.get(ch)
        if opt is not None and opt in contact and not _truthy(contact.get(opt)):
            return Decision("suppress", f"opted_out:{ch}")
        if ch in ADDRESS_FIELD:
            addr = address_of(ch, contact)
            if not valid_address(ch, addr):
                return Decision("suppress", f"invalid_address:{ch}")
            listed = self.suppressed.get((ch, normalize_address(addr)))  # type: ignore[arg-type]
            if listed:
                return Decision("suppress", f"suppression_list:{listed}")
        return None

    def caps(self, touch: dict[str, Any]) -> Decision | None:
        """Suppressed by the program's cap or the global cap; else None."""
        p, ch, now = self.policy, touch["channel"], self.now
        cap = p.program_caps.get(touch["programId"])
        if cap is not None:
            since = now - cap.window_days * 86_400
            others = {
                s
                for s, at in self.subjects[(touch["customerId"], touch["programId"])].items()
                if at >= since and s != str(touch["subjectId"])
            }
            if len(others) >= cap.max_subjects:
                return Decision("suppress", "program_cap")
        if ch in p.counted_channels:
            since = now - p.global_window_days * 86_400
            if sum(1 for at in self.counted[touch["customerId"]] if at >= since) >= p.global_cap:
                return Decision("suppress", "global_cap")
        return None

    def quiet(self, touch: dict[str, Any], contact: dict[str, Any] | None) -> Decision:
        """Deferred to the end of the customer's local quiet hours on a quiet-hours channel; else allowed."""
        p, ch = self.policy, touch["channel"]
        if ch in p.quiet_channels:
            tz = (contact or {}).get("time_zone") or touch.get("timeZone") or p.default_time_zone
            until = quiet_until(self.now, tz, p.quiet_start, p.quiet_end, p.default_time_zone)
            if until is not None:
                return Decision("defer", "deferred:quiet_hours", until)
        return ALLOW


def address_of(channel: str, contact: dict[str, Any] | None) -> str | None:
    if contact is None or channel not in ADDRESS_FIELD:
        return None
    value = contact.get(ADDRESS_FIELD[channel])
    return None if value is None else str(value).strip()


def valid_address(channel: str, address: str | None) -> bool:
    """Whether `address` looks like a deliverable address of the channel's address column (e-mail, E.164 phone)."""
    if not address:
        return False
    pattern = ADDRESS_PATTERNS.get(ADDRESS_FIELD.get(channel, ""))
    if pattern is EMAIL_RE and len(address) > 254:
        return False
    return pattern is None or pattern.match(address) is not None


@lru_cache(maxsize=256)
def _zone(name: str, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


def quiet_until(now: int, tz: str, start: time, end: time, default_tz: str = "UTC") -> int | None:
    """End of the quiet window (epoch s) if `now` falls inside it in time zone `tz`; None outside it.

    The window may wrap midnight (21:00–08:00).  Computed on local wall-clock time, so DST shifts are honoured.
    """
    if start == end:
        return None
    zone = _zone(tz, default_tz)
    local = datetime.fromtimestamp(now, zone)
    t = local.time()
    wraps = start > end
    inside = (t >= start or t < end) if wraps else (start <= t < end)
    if not inside:
        return None
    day = local.date() + timedelta(days=1) if (wraps and t >= start) else local.date()
    return int(datetime.combine(day, end, tzinfo=zone).timestamp())


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "t", "yes", "y")
    return bool(v)


def policy_for(programs: Iterable[ProgramBase], **overrides: Any) -> PressurePolicy:
    """The pressure policy with every program's cap from its config (and global settings from `overrides`)."""
    caps = {p.programId: c for p in programs if (c := program_cap(p)) is not None}
    return PressurePolicy(program_caps=caps, **overrides)
