"""Touch plan: per candidate, the touches its program's `channels` ask for — channel, send time, conditions.

Timing (from each channel's config, the spec's words):
- `sendTime` + `timezone: local`: the next `sendTime` (10:00) in the customer's own time zone at or after the
  plan's clock (the partition's as-of); the zone comes from the customer (`time_zone`, the customers table before
  the offer row), else the marketplace's; `timezone: <IANA zone>` pins one zone for everybody.
- `delayDays` (win-back SMS +3 days): local calendar days after the channel's base time, so a DST change never
  moves 10:00 to 09:00.  A channel without `sendTime` (the refund SMS confirmation) goes with the program's first
  timed channel, if its type takes a send time at all (the registry's `takes_send_time`: email, SMS, push).
- `delayMinutes` / `delayHours` (abandoned cart +60 min / +24 h / +72 h): elapsed time after the candidate's event
  (`event_at`, `abandoned_at` or `cart_abandoned_at` in the offers, epoch seconds or a timestamp), else after the
  plan's clock.  A touch whose time has already passed when it is planned is due at once.
- `scheduleWithin` (phone: 24 h for churn critical, 48 h for win-back high): the call task is due now; the call-task
  channel gives the account manager the window from the same config.
- `displayDuration` (in-app): due now; the inbox channel shows it for that many days.

Conditions: the static ones decide here whether the touch exists — `criticalRiskOnly` (segments with riskLevel
critical), `highImpactOnly` (impactLevel high), `highScoreOnly` (the top segment: its score range reaches 1.0);
each falls back to the top segment when no segment carries that level.  The dynamic ones (`onlyIfNotConverted`,
`onlyIfCartAbandoned`) go into `conditions` and are re-checked at send time.
Holdout candidates get their touches planned with `holdout = true`: the ledger records them as held out and
nothing is ever sent to them.  `expiresAt` is the candidate's expiry (`candidateTTLDays` after the plan's clock).

Vectorised: per-row work is Arrow/numpy; Python loops run over segments, channels and distinct time zones only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain.channels import channel_spec
from engage_assets.domain.config import Channel, ProgramConfig, ReactiveProgram
from engage_assets.domain.plan_columns import column, epoch_seconds, lookup, offer_json, strings
from engage_assets.domain.template_sources import channel_template_id

# The spec's eight marketplaces: default time zone, currency and locale (a customer's own zone wins).
MARKETPLACES: dict[str, tuple[str, str, str]] = {
    "US": ("America/New_York", "USD", "en_US"),
    "UK": ("Europe/London", "GBP", "en_GB"),
    "DE": ("Europe/Berlin", "EUR", "de_DE"),
    "FR": ("Europe/Paris", "EUR", "fr_FR"),
    "JP": ("Asia/Tokyo", "JPY", "ja_JP"),
    "IN": ("Asia/Kolkata", "INR", "en_IN"),
    "BR": ("America/Sao_Paulo", "BRL", "pt_BR"),
    "AU": ("Australia/Sydney", "AUD", "en_AU"),
}
STATIC_CONDITIONS = ("highImpactOnly", "criticalRiskOnly", "highScoreOnly")
DYNAMIC_CONDITIONS = {"onlyIfNotConverted": "not_converted", "onlyIfCartAbandoned": "cart_abandoned"}
EVENT_COLUMNS = ("event_at", "abandoned_at", "cart_abandoned_at")
# A batch program, or a reactive one (its `strategy` is derived from its discount strategy).
PlannedProgram = ProgramConfig | ReactiveProgram

PLAN_SCHEMA = pa.schema(
    [
        ("touchKey", pa.string()),
        ("programId", pa.string()),
        ("partitionKey", pa.string()),
        ("customerId", pa.string()),
        ("subjectId", pa.string()),
        ("touchId", pa.string()),
        ("channel", pa.string()),
        ("channelId", pa.string()),
        ("templateId", pa.string()),
        ("dueAt", pa.int64()),
        ("expiresAt", pa.int64()),
        ("conditions", pa.string()),
        ("segment", pa.string()),
        ("offerType", pa.string()),
        ("offer", pa.string()),
        ("holdout", pa.bool_()),
        ("marketplace", pa.string()),
        ("timeZone", pa.string()),
        ("currency", pa.string()),
        ("score", pa.float64()),
    ]
)


def zone_for(marketplace: str | None, time_zone: str | None) -> str:
    """The customer's IANA zone if it is a valid one, else the marketplace's, else UTC."""
    if time_zone:
        try:
            ZoneInfo(time_zone)
            return time_zone
        except (KeyError, ValueError):
            pass
    return MARKETPLACES.get(marketplace or "", ("UTC",))[0]


def next_local_time(now: datetime, zone: str, hhmm: str, days: int = 0, minutes: int = 0) -> int:
    """Epoch seconds of the first `hhmm` local time in `zone` at or after `now`, then `days` local days and
    `minutes` later. Local arithmetic: 10:00 stays 10:00 across a DST change.  A wall time that does not exist
    (skipped by a spring-forward) resolves to the same instant a clock reads just after the gap."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    hour, minute = (int(x) for x in hhmm.split(":"))
    target = datetime(local.year, local.month, local.day, hour, minute, tzinfo=tz)
    if target < local:
        target = datetime.combine(target.date() + timedelta(days=1), target.timetz())
    target = datetime.combine(target.date() + timedelta(days=days), target.timetz()) + timedelta(minutes=minutes)
    return int(target.timestamp())


def _delay(ch: Channel) -> tuple[int, int]:
    """(local days, minutes) of a channel's delay."""
    c = ch.config
    return int(c.delayDays or 0), int(c.delayMinutes or 0) + 60 * int(c.delayHours or 0)


def touch_id(ch: Channel) -> str:
    """Stable id of a channel's touch within a candidate: `initial`, or the delay (`+3d`, `+60m`)."""
    days, minutes = _delay(ch)
    if days:
        return f"+{days}d" if not minutes else f"+{days}d{minutes}m"
    return f"+{minutes}m" if minutes else "initial"


def channel_conditions(ch: Channel) -> list[str]:
    """The send-time conditions of a channel, as the ledger stores them."""
    return [name for key, name in DYNAMIC_CONDITIONS.items() if getattr(ch.config, key)]


def template_id(ch: Channel) -> str:
    """The channel's template id (`domain.template_sources` says where its files are looked for)."""
    return channel_template_id(ch.config, ch.channelId)


def followed_send_time(timed: Channel | None, ch: Channel) -> str | None:
    """The program's first `sendTime` (of channel `timed`), for a channel without its own whose type takes one."""
    return timed.config.sendTime if timed is not None and channel_spec(ch.type).takes_send_time else None


def eligible_segments(program: PlannedProgram, ch: Channel) -> set[str] | None:
    """Names of the segments a channel's static condition admits (None: every segment)."""
    segs = program.strategy.segments
    top = {s.name for s in segs if s.scoreRange[1] >= 1.0}
    c, allowed = ch.config, None
    for flag, level in (
        ("criticalRiskOnly", ("riskLevel", "critical")),
        ("highImpactOnly", ("impactLevel", "high")),
        ("highScoreOnly", None),
    ):
        if not getattr(c, flag):
            continue
        names = {s.name for s in segs if level and getattr(s, level[0]) == level[1]} or top
        allowed = names if allowed is None else allowed & names
    return allowed


@dataclass(frozen=True)
class _Candidates:
    """The per-row columns every channel's touches share (one entry per offer row of a program segment)."""

    partition_key: str
    now: datetime
    seg_idx: np.ndarray  # row → index into the program's segments
    segment: pa.Array
    customer: pa.Array
    subject: pa.Array
    marketplace: pa.Array
    zone: pa.Array
    currency: pa.Array
    pair_idx: np.ndarray  # row → index into `zones`
    zones: list[str]  # the zone of each distinct (marketplace, customer zone) pair
    event_s: np.ndarray | None  # the candidate's event, epoch seconds (None: the offers carry no event column)
    expires: int
    offer: pa.Array
    offer_type: pa.Array
    holdout: pa.Array
    score: pa.Array


def by_priority(channels: Sequence[Channel]) -> list[Channel]:
    """The enabled channels, highest `priority` (1) first; equal priorities in config order.  The plan lists each
    candidate's touches in this order, a channel without its own `sendTime` follows the first timed channel of it,
    and delivery claims touches due together in it (`EngineConfig.channel_priority`)."""
    return sorted((ch for ch in channels if ch.enabled), key=lambda ch: ch.priority)


def plan_touches(
    program: PlannedProgram,
    offers: pa.Table,
    customers: pa.Table | None,
    now: datetime,
    partition_key: str | None = None,
) -> pa.Table:
    """Every touch of every candidate in `offers` (one program partition), as of `now` (the partition's as-of).

    `customers` (optional; customer_id, marketplace, time_zone, currency) supplies the locale when the offer row
    lacks it.  Rows whose segment is not one of the program's are skipped."""
    channels = by_priority(program.channels)
    if offers.num_rows == 0 or not channels:
        return PLAN_SCHEMA.empty_table()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    partition_key = partition_key or _partition_key(offers)
    seg_names = pa.array([s.name for s in program.strategy.segments], pa.string())
    seg_all = strings(column(offers, "segment"), offers.num_rows)
    offers = offers.filter(pc.fill_null(pc.is_in(seg_all, value_set=seg_names), False))
    if offers.num_rows == 0:
        return PLAN_SCHEMA.empty_table()
    cands = _candidates(program, offers, customers, now, partition_key)
    timed = next((ch for ch in channels if ch.config.sendTime), None)
    parts = []
    for ch in channels:
        rows = _channel_rows(program, ch, cands.seg_idx)
        if len(rows) == 0:
            continue
        parts.append(_touch_table(program, ch, cands, rows, _due_at(ch, timed, cands, rows)))
    return pa.concat_tables(parts) if parts else PLAN_SCHEMA.empty_table()


def _offer_index(offers: pa.Table, seg_names: pa.Array, seg_idx: np.ndarray) -> np.ndarray:
    """Per row, the segment whose offer terms the touch carries: the chosen offer's (`offer_segment`, written by the
    offer choice, `domain.offer_choice`) where there is one, else the row's own segment."""
    if "offer_segment" not in offers.column_names:
        return seg_idx
    chosen = pc.index_in(strings(offers.column("offer_segment"), offers.num_rows), value_set=seg_names)
    found = pc.is_valid(chosen).to_numpy(zero_copy_only=False)
    return np.where(found, pc.fill_null(chosen, 0).to_numpy(zero_copy_only=False), seg_idx).astype(np.int64)


def _candidates(
    program: PlannedProgram, offers: pa.Table, customers: pa.Table | None, now: datetime, partition_key: str
) -> _Candidates:
    """The shared per-row columns of `offers` (already restricted to the program's segments)."""
    n = offers.num_rows
    segments = list(program.strategy.segments)
    seg_arr = strings(offers.column("segment"), n)
    seg_names = pa.array([s.name for s in segments], pa.string())
    seg_idx = pc.index_in(seg_arr, value_set=seg_names).to_numpy().astype(np.int64)
    customer = strings(offers.column("customer_id"), n)
    subject_col = program.subject_column
    subject = strings(column(offers, subject_col), n) if subject_col in offers.column_names else customer
    marketplace = pc.coalesce(
        strings(column(offers, "marketplace"), n), strings(lookup(customer, customers, "marketplace"), n)
    )
    raw_zone = pc.coalesce(
        strings(lookup(customer, customers, "time_zone"), n), strings(column(offers, "time_zone"), n)
    )
    currency = pc.coalesce(strings(column(offers, "currency"), n), strings(lookup(customer, customers, "currency"), n))
    pair_idx, zones, zone, default_currency = _locales(marketplace, raw_zone)
    now_s = int(now.timestamp())
    event_col = next((c for c in EVENT_COLUMNS if c in offers.column_names), None)
    return _Candidates(
        partition_key=partition_key,
        now=now,
        seg_idx=seg_idx,
        segment=seg_arr,
        customer=customer,
        subject=subject,
        marketplace=marketplace,
        zone=zone,
        currency=pc.coalesce(currency, default_currency),
        pair_idx=pair_idx,
        zones=zones,
        event_s=epoch_seconds(offers.column(event_col), n, now_s) if event_col else None,
        expires=now_s + program.candidateTTLDays * 86_400,
        offer=offer_json(program, offers, _offer_index(offers, seg_names, seg_idx), segments),
        offer_type=strings(column(offers, "offer_type"), n),
        holdout=pc.fill_null(offers.column("holdout").combine_chunks().cast(pa.bool_()), False),
        score=pc.cast(offers.column("score").combine_chunks(), pa.float64()),
    )


def _locales(marketplace: pa.Array, raw_zone: pa.Array) -> tuple[np.ndarray, list[str], pa.Array, pa.Array]:
    """(row → pair index, zone per distinct pair, zone per row, marketplace's default currency per row).

    Time zone and default currency are resolved per distinct (marketplace, zone) pair: a handful of Python calls,
    not one per row."""
    pair = pc.binary_join_element_wise(pc.fill_null(marketplace, ""), pc.fill_null(raw_zone, ""), "|")
    pairs = pc.unique(pair)
    pair_idx = pc.index_in(pair, value_set=pairs).to_numpy().astype(np.int64)
    uniq = [p.split("|", 1) for p in pairs.to_pylist()]
    uniq_zone = [zone_for(mp or None, tz or None) for mp, tz in uniq]
    uniq_cur = [MARKETPLACES.get(mp, (None, "USD"))[1] for mp, _ in uniq]
    zone = pa.array(np.array(uniq_zone, dtype=object)[pair_idx], pa.string())
    currency = pa.array(np.array(uniq_cur, dtype=object)[pair_idx], pa.string())
    return pair_idx, uniq_zone, zone, currency


def _channel_rows(program: PlannedProgram, ch: Channel, seg_idx: np.ndarray) -> np.ndarray:
    """Indices of the rows whose segment the channel's static condition admits."""
    allowed = eligible_segments(program, ch)
    if allowed is None:
        return np.arange(len(seg_idx))
    admitted = [i for i, s in enumerate(program.strategy.segments) if s.name in allowed]
    return np.flatnonzero(np.isin(seg_idx, admitted))


def _due_at(ch: Channel, timed: Channel | None, cands: _Candidates, rows: np.ndarray) -> np.ndarray:
    """Send time (epoch seconds) of the channel's touch for each of `rows`: the next local `sendTime` (the
    channel's own or the program's first) plus local days, else the candidate's event (or the clock) plus the
    delay."""
    days, minutes = _delay(ch)
    hhmm = ch.config.sendTime or followed_send_time(timed, ch)
    if hhmm:
        pinned = ch.config.timezone if ch.config.timezone not in (None, "local") else None
        base_cfg = ch.config if ch.config.sendTime else timed.config  # type: ignore[union-attr]
        pinned = pinned or (base_cfg.timezone if base_cfg.timezone not in (None, "local") else None)
        per_zone = np.array(
            [next_local_time(cands.now, pinned or z, hhmm, days, minutes) for z in cands.zones], dtype=np.int64
        )
        return per_zone[cands.pair_idx[rows]]
    now_s = int(cands.now.timestamp())
    base = cands.event_s[rows] if cands.event_s is not None else np.full(len(rows), now_s, dtype=np.int64)
    return base + days * 86_400 + minutes * 60


def _touch_table(
    program: PlannedProgram, ch: Channel, cands: _Candidates, rows: np.ndarray, due: np.ndarray
) -> pa.Table:
    """The channel's touch rows (PLAN_SCHEMA) for the candidates at `rows`, due at `due`."""
    take = pa.array(rows)
    tid = touch_id(ch)
    cust, subj = cands.customer.take(take), cands.subject.take(take)
    m = len(rows)
    return pa.table(
        {
            "touchKey": pc.binary_join_element_wise(program.programId, cust, subj, tid, ch.channelId, "#"),
            "programId": pa.array([program.programId] * m, pa.string()),
            "partitionKey": pa.array([cands.partition_key] * m, pa.string()),
            "customerId": cust,
            "subjectId": subj,
            "touchId": pa.array([tid] * m, pa.string()),
            "channel": pa.array([ch.type] * m, pa.string()),
            "channelId": pa.array([ch.channelId] * m, pa.string()),
            "templateId": pa.array([template_id(ch)] * m, pa.string()),
            "dueAt": pa.array(due, pa.int64()),
            "expiresAt": pa.array(np.full(m, cands.expires, dtype=np.int64)),
            "conditions": pa.array([json.dumps(channel_conditions(ch))] * m, pa.string()),
            "segment": cands.segment.take(take),
            "offerType": cands.offer_type.take(take),
            "offer": cands.offer.take(take),
            "holdout": cands.holdout.take(take),
            "marketplace": cands.marketplace.take(take),
            "timeZone": cands.zone.take(take),
            "currency": cands.currency.take(take),
            "score": cands.score.take(take),
        },
        schema=PLAN_SCHEMA,
    )


def _partition_key(offers: pa.Table) -> str:
    """The partition the offers belong to when the caller does not say: schema metadata or a column."""
    meta = offers.schema.metadata or {}
    if b"engage.partition_key" in meta:
        return meta[b"engage.partition_key"].decode()
    if "partition_key" in offers.column_names and offers.num_rows:
        return str(offers.column("partition_key")[0].as_py())
    raise ValueError("offers carry no partition key (schema metadata engage.partition_key or a partition_key column)")
