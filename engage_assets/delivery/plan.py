"""Touch plan: per candidate, the touches its program's `channels` ask for — channel, send time, conditions.

Timing (from each channel's config, the spec's words):
- `sendTime` + `timezone: local`: the next `sendTime` (10:00) in the customer's own time zone at or after the
  plan's clock (the partition's as-of); the zone comes from the customer (`time_zone`), else the marketplace's.
- `delayDays` (win-back SMS +3 days), `delayMinutes` / `delayHours` (abandoned cart +60 min / +24 h / +72 h):
  added to the channel's base time in local calendar terms, so a DST change never moves 10:00 to 09:00.
  A channel without `sendTime` (the refund SMS confirmation) goes with the program's first timed channel.
- `scheduleWithin` (phone: 24 h for churn critical, 48 h for win-back high): the call task is created now and due
  within that window (the engine's call-task channel sets the task's due time from the same config).
- `displayDuration` (in-app): shown from now for that many days (the inbox channel sets the display window).

Conditions: the static ones (`highImpactOnly`, `criticalRiskOnly`, `highScoreOnly`) decide here whether the
touch exists (the top segment only: the one whose score range reaches 1.0); the dynamic ones
(`onlyIfNotConverted`, a cart still abandoned) go into `conditions` and are re-checked at send time.
Holdout candidates get their touches planned with `holdout = true`: the ledger records them as held out and
nothing is ever sent to them.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from engage_assets.config import Channel, ProgramConfig, Segment
from engage_assets.pipeline import offer_details

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

PLAN_SCHEMA = pa.schema([
    ("touchKey", pa.string()), ("programId", pa.string()), ("partitionKey", pa.string()),
    ("customerId", pa.string()), ("subjectId", pa.string()), ("touchId", pa.string()), ("channel", pa.string()),
    ("channelId", pa.string()), ("templateId", pa.string()), ("dueAt", pa.int64()), ("expiresAt", pa.int64()),
    ("conditions", pa.string()), ("segment", pa.string()), ("offerType", pa.string()), ("offer", pa.string()),
    ("holdout", pa.bool_()), ("marketplace", pa.string()), ("timeZone", pa.string()), ("currency", pa.string()),
    ("score", pa.float64()),
])


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
    `minutes` later. Local arithmetic: 10:00 stays 10:00 across a DST change."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    hour, minute = (int(x) for x in hhmm.split(":"))
    target = datetime(local.year, local.month, local.day, hour, minute, tzinfo=tz)
    if target < local:
        target = datetime.combine(target.date() + timedelta(days=1), target.timetz())
    target = datetime.combine(target.date() + timedelta(days=days), target.timetz()) + timedelta(minutes=minutes)
    return int(target.timestamp())


def _delay_minutes(ch: Channel) -> tuple[int, int]:
    """(local days, minutes) of a channel's delay."""
    extra = ch.config.model_extra or {}
    days = int(ch.config.delayDays or 0)
    minutes = int(extra.get("delayMinutes") or 0) + 60 * int(extra.get("delayHours") or 0)
    return days, minutes


def _conditions(ch: Channel) -> list[str]:
    cfg = {**(ch.config.model_extra or {}), **ch.config.model_dump(exclude_none=True)}
    return [name for key, name in DYNAMIC_CONDITIONS.items() if cfg.get(key)]


def _static_only(ch: Channel) -> bool:
    cfg = {**(ch.config.model_extra or {}), **ch.config.model_dump(exclude_none=True)}
    return any(cfg.get(k) for k in STATIC_CONDITIONS)


def touch_id(ch: Channel) -> str:
    """Stable id of a channel's touch within a candidate: `initial`, or the delay (`+3d`, `+60m`)."""
    days, minutes = _delay_minutes(ch)
    if days:
        return f"+{days}d" if not minutes else f"+{days}d{minutes}m"
    return f"+{minutes}m" if minutes else "initial"


def _offer_json(seg: Segment, value_usd: float, fx: float | None, order_value: float | None) -> str:
    """The offer as the templates see it: the segment's terms, `discountPercent`, and amounts in the order's (or
    the marketplace's) currency: `refundAmount` is the order value for a full refund, credits are converted from
    the config's USD with the order's own rate."""
    offer = offer_details(seg)
    offer["valueUsd"] = round(float(value_usd), 2)
    if seg.discount is not None:
        offer["discountPercent"] = int(seg.discount) if float(seg.discount).is_integer() else seg.discount
    rate = fx if fx and np.isfinite(fx) and fx > 0 else 1.0  # local units per USD
    if seg.refundType == "full" and order_value is not None:
        offer["refundAmount"] = round(float(order_value), 2)
    elif seg.refundAmount is not None:
        offer["refundAmount"] = round(seg.refundAmount * rate, 2)
    credit = seg.creditAmount if seg.creditAmount is not None else seg.additionalCredit
    if credit is not None:
        offer["creditAmount"] = round(credit * rate, 2)
    return json.dumps(offer, sort_keys=True, separators=(",", ":"))


def plan_touches(program: ProgramConfig, offers: pa.Table, customers: pa.Table, now: datetime,
                 partition_key: str | None = None) -> pa.Table:
    """Every touch of every candidate in `offers` (one program partition), as of `now` (the partition's as-of)."""
    n = offers.num_rows
    channels = [ch for ch in program.channels if ch.enabled]
    if n == 0 or not channels:
        return PLAN_SCHEMA.empty_table()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    cols = offers.to_pydict()
    subject_col = program.connector.subjectColumn
    segments = {s.name: s for s in program.strategy.segments}
    top = {name for name, s in segments.items() if s.scoreRange[1] >= 1.0}
    partition_key = partition_key or _partition_key(offers)
    expires = int((now + timedelta(days=program.candidateTTLDays)).timestamp())

    # Time zone per customer: the customers table (fresh contact data) first, the offer row's context second.
    zones_by_customer: dict[str, str | None] = {}
    if customers is not None and customers.num_rows and "time_zone" in customers.column_names:
        zones_by_customer = dict(zip(customers.column("customer_id").cast(pa.string()).to_pylist(),
                                     customers.column("time_zone").to_pylist()))
    timed = next((ch for ch in channels if ch.config.sendTime), None)
    base_hhmm = timed.config.sendTime if timed else None

    nones = [None] * n
    marketplaces = cols.get("marketplace", nones)
    row_zones = cols.get("time_zone", nones)
    zone_memo: dict[tuple[Any, Any], str] = {}
    statics = {ch.channelId: _static_only(ch) for ch in channels}
    delays = {ch.channelId: _delay_minutes(ch) for ch in channels}
    tids = {ch.channelId: touch_id(ch) for ch in channels}
    conds = {ch.channelId: json.dumps(_conditions(ch)) for ch in channels}
    templates = {ch.channelId: ch.config.templateId or (ch.config.model_extra or {}).get("scriptId")
                 or (ch.config.model_extra or {}).get("messageType") or f"{ch.channelId}-default" for ch in channels}
    order_value = cols.get("order_value")
    order_usd = cols.get("order_value_usd")
    currency_col = cols.get("currency")
    out: dict[str, list[Any]] = {f.name: [] for f in PLAN_SCHEMA}
    due_cache: dict[tuple[str, int, int, str | None], int] = {}
    now_s = int(now.timestamp())
    for i in range(n):
        customer = str(cols["customer_id"][i])
        subject = str(cols[subject_col][i]) if subject_col in cols else customer
        seg_name = cols["segment"][i]
        seg = segments.get(seg_name)
        if seg is None:
            continue
        marketplace = marketplaces[i]
        zkey = (marketplace, zones_by_customer.get(customer) or row_zones[i])
        zone = zone_memo.get(zkey)
        if zone is None:
            zone = zone_memo[zkey] = zone_for(*zkey)
        fx = None
        if order_value is not None and order_usd is not None and order_usd[i]:
            fx = order_value[i] / order_usd[i]
        currency = (currency_col[i] if currency_col is not None and currency_col[i]
                    else MARKETPLACES.get(marketplace or "", (None, "USD"))[1])
        offer = _offer_json(seg, cols["offer_value_usd"][i], fx, order_value[i] if order_value else None)
        for ch in channels:
            if statics[ch.channelId] and seg_name not in top:
                continue
            days, minutes = delays[ch.channelId]
            hhmm = ch.config.sendTime or (base_hhmm if ch.type in ("email", "sms", "push") else None)
            if hhmm:
                k = (zone, days, minutes, hhmm)
                if k not in due_cache:
                    due_cache[k] = next_local_time(now, zone, hhmm, days, minutes)
                due = due_cache[k]
            else:
                due = now_s + days * 86_400 + minutes * 60
            tid = tids[ch.channelId]
            out["touchKey"].append(f"{program.programId}#{customer}#{subject}#{tid}#{ch.channelId}")
            out["programId"].append(program.programId)
            out["partitionKey"].append(partition_key)
            out["customerId"].append(customer)
            out["subjectId"].append(subject)
            out["touchId"].append(tid)
            out["channel"].append(ch.type)
            out["channelId"].append(ch.channelId)
            out["templateId"].append(templates[ch.channelId])
            out["dueAt"].append(due)
            out["expiresAt"].append(expires)
            out["conditions"].append(conds[ch.channelId])
            out["segment"].append(seg_name)
            out["offerType"].append(cols["offer_type"][i])
            out["offer"].append(offer)
            out["holdout"].append(bool(cols["holdout"][i]))
            out["marketplace"].append(marketplace)
            out["timeZone"].append(zone)
            out["currency"].append(currency)
            out["score"].append(float(cols["score"][i]))
    return pa.table(out, schema=PLAN_SCHEMA)


def _partition_key(offers: pa.Table) -> str:
    """The partition the offers belong to when the caller does not say: schema metadata or a column."""
    meta = offers.schema.metadata or {}
    if b"engage.partition_key" in meta:
        return meta[b"engage.partition_key"].decode()
    if "partition_key" in offers.column_names and offers.num_rows:
        return str(offers.column("partition_key")[0].as_py())
    raise ValueError("offers carry no partition key (schema metadata engage.partition_key or a partition_key column)")
