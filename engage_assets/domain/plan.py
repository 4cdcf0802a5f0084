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
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain.channels import channel_spec
from engage_assets.domain.config import Channel, ProgramConfig, Segment
from engage_assets.domain.pipeline import offer_details

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
# Offer amounts computed per row (the rest of the offer is the segment's terms, the same for every row).
_ROW_AMOUNTS = ("valueUsd", "refundAmount", "creditAmount")

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
    c = ch.config
    return c.templateId or c.scriptId or c.messageType or f"{ch.channelId}-default"


def followed_send_time(timed: Channel | None, ch: Channel) -> str | None:
    """The program's first `sendTime` (of channel `timed`), for a channel without its own whose type takes one."""
    return timed.config.sendTime if timed is not None and channel_spec(ch.type).takes_send_time else None


def eligible_segments(program: ProgramConfig, ch: Channel) -> set[str] | None:
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


def _static_offer(seg: Segment) -> dict:
    offer = offer_details(seg)
    if seg.discount is not None:
        offer["discountPercent"] = int(seg.discount) if float(seg.discount).is_integer() else seg.discount
    for k in _ROW_AMOUNTS:
        offer.pop(k, None)
    return offer


def _col(table: pa.Table | None, name: str) -> pa.ChunkedArray | None:
    return table.column(name) if table is not None and name in table.column_names else None


def _strings(arr: pa.ChunkedArray | pa.Array | None, n: int) -> pa.Array:
    if arr is None:
        return pa.nulls(n, pa.string())
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return arr.cast(pa.string())


def _floats(arr: pa.ChunkedArray | None, n: int) -> np.ndarray:
    if arr is None:
        return np.full(n, np.nan)
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).astype(float)


def _epoch_seconds(arr: pa.ChunkedArray, n: int, default: int) -> np.ndarray:
    """An event column (epoch seconds, or a timestamp/date) as int64 epoch seconds; nulls → `default`."""
    arr = arr.combine_chunks()
    if pa.types.is_timestamp(arr.type):
        unit = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[arr.type.unit]
        secs = pc.divide(arr.cast(pa.int64()), unit)
    elif pa.types.is_date(arr.type):
        secs = pc.multiply(arr.cast(pa.date32()).cast(pa.int32()).cast(pa.int64()), 86_400)
    else:
        secs = pc.cast(arr, pa.int64())
    return pc.fill_null(secs, default).to_numpy(zero_copy_only=False).astype(np.int64)


def _lookup(keys: pa.Array, table: pa.Table | None, column: str) -> pa.Array | None:
    """`table[column]` of the row whose customer_id equals each key (null where none)."""
    col = _col(table, column)
    ids = _col(table, "customer_id")
    if table is None or col is None or ids is None or table.num_rows == 0:
        return None
    idx = pc.index_in(keys, value_set=_strings(ids, table.num_rows))
    return col.combine_chunks().take(idx)


def _json_numbers(values: np.ndarray) -> pa.Array:
    """Floats as JSON number text rounded to cents, `null` where missing."""
    arr = pa.array(np.round(values, 2), from_pandas=True)
    return pc.fill_null(arr.cast(pa.string()), "null")


def _offer_json(program: ProgramConfig, offers: pa.Table, seg_idx: np.ndarray, segments: list[Segment]) -> pa.Array:
    """The offer as the templates see it, one JSON object per row: the segment's terms, `discountPercent`,
    `valueUsd`, and amounts in the order's (or the marketplace's) currency: `refundAmount` is the order value for a
    full refund, the config's USD amounts are converted with the order's own rate."""
    n = offers.num_rows
    value_usd = _floats(_col(offers, "offer_value_usd"), n)
    order_value = _floats(_col(offers, "order_value"), n)
    order_usd = _floats(_col(offers, "order_value_usd"), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        fx = order_value / order_usd
    fx = np.where(np.isfinite(fx) & (fx > 0), fx, 1.0)  # local units per USD
    refund = np.full(n, np.nan)
    credit = np.full(n, np.nan)
    prefixes = []
    for i, seg in enumerate(segments):
        rows = seg_idx == i
        if seg.refundType == "full":
            refund[rows] = order_value[rows]
        if seg.refundAmount is not None:
            fill = rows & np.isnan(refund)
            refund[fill] = seg.refundAmount * fx[fill]
        amount = seg.creditAmount if seg.creditAmount is not None else seg.additionalCredit
        if amount is not None:
            credit[rows] = amount * fx[rows]
        body = json.dumps(_static_offer(seg), sort_keys=True, separators=(",", ":"))
        prefixes.append(body[:-1] + ("," if body != "{}" else ""))
    prefix = pa.array(np.array(prefixes, dtype=object)[seg_idx], pa.string())
    return pc.binary_join_element_wise(
        prefix,
        '"valueUsd":',
        _json_numbers(value_usd),
        ',"refundAmount":',
        _json_numbers(refund),
        ',"creditAmount":',
        _json_numbers(credit),
        "}",
        "",
    )


def plan_touches(
    program: ProgramConfig,
    offers: pa.Table,
    customers: pa.Table | None,
    now: datetime,
    partition_key: str | None = None,
) -> pa.Table:
    """Every touch of every candidate in `offers` (one program partition), as of `now` (the partition's as-of).

    `customers` (optional; customer_id, marketplace, time_zone, currency) supplies the locale when the offer row
    lacks it.  Rows whose segment is not one of the program's are skipped."""
    channels = [ch for ch in program.channels if ch.enabled]
    if offers.num_rows == 0 or not channels:
        return PLAN_SCHEMA.empty_table()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    partition_key = partition_key or _partition_key(offers)
    segments = list(program.strategy.segments)
    seg_names = [s.name for s in segments]
    seg_all = _strings(_col(offers, "segment"), offers.num_rows)
    offers = offers.filter(pc.fill_null(pc.is_in(seg_all, value_set=pa.array(seg_names, pa.string())), False))
    n = offers.num_rows
    if n == 0:
        return PLAN_SCHEMA.empty_table()
    seg_arr = _strings(offers.column("segment"), n)
    seg_idx = pc.index_in(seg_arr, value_set=pa.array(seg_names, pa.string())).to_numpy().astype(np.int64)

    customer = _strings(offers.column("customer_id"), n)
    subject_col = program.connector.subjectColumn
    subject = _strings(_col(offers, subject_col), n) if subject_col in offers.column_names else customer
    marketplace = pc.coalesce(
        _strings(_col(offers, "marketplace"), n), _strings(_lookup(customer, customers, "marketplace"), n)
    )
    raw_zone = pc.coalesce(
        _strings(_lookup(customer, customers, "time_zone"), n), _strings(_col(offers, "time_zone"), n)
    )
    currency = pc.coalesce(_strings(_col(offers, "currency"), n), _strings(_lookup(customer, customers, "currency"), n))

    # Time zone and default currency per distinct (marketplace, zone) pair: a handful of Python calls, not n.
    pair = pc.binary_join_element_wise(pc.fill_null(marketplace, ""), pc.fill_null(raw_zone, ""), "|")
    pairs = pc.unique(pair)
    pair_idx = pc.index_in(pair, value_set=pairs).to_numpy().astype(np.int64)
    uniq = [p.split("|", 1) for p in pairs.to_pylist()]
    uniq_zone = [zone_for(mp or None, tz or None) for mp, tz in uniq]
    uniq_cur = [MARKETPLACES.get(mp, (None, "USD"))[1] for mp, _ in uniq]
    zone = pa.array(np.array(uniq_zone, dtype=object)[pair_idx], pa.string())
    currency = pc.coalesce(currency, pa.array(np.array(uniq_cur, dtype=object)[pair_idx], pa.string()))

    now_s = int(now.timestamp())
    event_col = next((c for c in EVENT_COLUMNS if c in offers.column_names), None)
    event_s = _epoch_seconds(offers.column(event_col), n, now_s) if event_col else None
    expires = now_s + program.candidateTTLDays * 86_400
    offer = _offer_json(program, offers, seg_idx, segments)
    holdout = pc.fill_null(offers.column("holdout").combine_chunks().cast(pa.bool_()), False)
    offer_type = _strings(_col(offers, "offer_type"), n)
    score = pc.cast(offers.column("score").combine_chunks(), pa.float64())
    timed = next((ch for ch in channels if ch.config.sendTime), None)

    parts = []
    for ch in channels:
        allowed = eligible_segments(program, ch)
        if allowed is None:
            rows = np.arange(n)
        else:
            rows = np.flatnonzero(np.isin(seg_idx, [i for i, s in enumerate(seg_names) if s in allowed]))
        if len(rows) == 0:
            continue
        take = pa.array(rows)
        days, minutes = _delay(ch)
        hhmm = ch.config.sendTime or followed_send_time(timed, ch)
        if hhmm:
            pinned = ch.config.timezone if ch.config.timezone not in (None, "local") else None
            base_cfg = ch.config if ch.config.sendTime else timed.config  # type: ignore[union-attr]
            pinned = pinned or (base_cfg.timezone if base_cfg.timezone not in (None, "local") else None)
            per_zone = np.array(
                [next_local_time(now, pinned or z, hhmm, days, minutes) for z in uniq_zone], dtype=np.int64
            )
            due = per_zone[pair_idx[rows]]
        else:
            base = event_s[rows] if event_s is not None else np.full(len(rows), now_s, dtype=np.int64)
            due = base + days * 86_400 + minutes * 60
        tid = touch_id(ch)
        cust, subj = customer.take(take), subject.take(take)
        m = len(rows)
        parts.append(
            pa.table(
                {
                    "touchKey": pc.binary_join_element_wise(program.programId, cust, subj, tid, ch.channelId, "#"),
                    "programId": pa.array([program.programId] * m, pa.string()),
                    "partitionKey": pa.array([partition_key] * m, pa.string()),
                    "customerId": cust,
                    "subjectId": subj,
                    "touchId": pa.array([tid] * m, pa.string()),
                    "channel": pa.array([ch.type] * m, pa.string()),
                    "channelId": pa.array([ch.channelId] * m, pa.string()),
                    "templateId": pa.array([template_id(ch)] * m, pa.string()),
                    "dueAt": pa.array(due, pa.int64()),
                    "expiresAt": pa.array(np.full(m, expires, dtype=np.int64)),
                    "conditions": pa.array([json.dumps(channel_conditions(ch))] * m, pa.string()),
                    "segment": seg_arr.take(take),
                    "offerType": offer_type.take(take),
                    "offer": offer.take(take),
                    "holdout": holdout.take(take),
                    "marketplace": marketplace.take(take),
                    "timeZone": zone.take(take),
                    "currency": currency.take(take),
                    "score": score.take(take),
                },
                schema=PLAN_SCHEMA,
            )
        )
    return pa.concat_tables(parts) if parts else PLAN_SCHEMA.empty_table()


def _partition_key(offers: pa.Table) -> str:
    """The partition the offers belong to when the caller does not say: schema metadata or a column."""
    meta = offers.schema.metadata or {}
    if b"engage.partition_key" in meta:
        return meta[b"engage.partition_key"].decode()
    if "partition_key" in offers.column_names and offers.num_rows:
        return str(offers.column("partition_key")[0].as_py())
    raise ValueError("offers carry no partition key (schema metadata engage.partition_key or a partition_key column)")
