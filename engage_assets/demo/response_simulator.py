"""The customer-response SIMULATOR (embedded demo only): what customers and providers would do with the touches the
platform sent, drawn from a known process so the platform's measurements (funnels, attribution, holdout lift) can
be checked against the truth.  Everything it writes says `simulated=true`; production never runs it.

`simulate_responses(assignments, contacts, truth, seed, params)` is pure and seeded:

- `assignments`: `history.ASSIGNMENT_SCHEMA` rows (every stored candidate, the holdout included);
- `contacts`: `history.CONTACT_SCHEMA` rows (the touches sent, with the provider's message id);
- `truth`: `customer_id`, `true_p`: the customer's hidden propensity to convert without any touch, in (0, 1)
  (0.5 is neutral; a customer missing from it gets 0.5); with a `program_id` column, per program and customer
  (`response_runner.generator_truth` computes it from the generator's own processes);

and returns `Responses(outcomes, conversions, true_lift)`.

The process (every parameter in `ResponseParams`, defaults below):

1. **Provider events, per sent touch** (email, sms, push; phone and in-app have none).  E-mail: bounce with
   `bounce_rate` (permanent with `permanent_share`), else delivered; a delivered e-mail is opened with
   `sigmoid(logit(open_rate) + truth_slope·logit(true_p))`, clicked given opened with `click_given_open`,
   complained with `complaint_rate`, unsubscribed given opened with `unsubscribe_rate`.  SMS/push: failed with
   `failure_rate` (permanent with `permanent_share`), else delivered; push opened like e-mail, SMS and push
   clicked with `click_rate` / `click_given_open`; SMS STOP with `unsubscribe_rate`.
2. **Conversions, per assignment.**  Baseline (no touch, and every held-out customer):
   `logit(p0) = logit(base_rate[program]) + truth_slope·logit(true_p) + segment_shift[segment]`.
   The partition's response window runs from its assigned date to `window_days` after the later of that date and
   the day of the partition's first send (the window `offer_conversions` measures in, whose
   `conversion_window_days` is at least this).  A treated customer (not held out) with a touch delivered within the
   window converts with
   `logit(p1) = logit(p0) + offer_effect[offer_type] + max(channel_effect[channel] over the delivered touches)`;
   a treated customer with none delivered has p1 = p0.  One uniform draw u per assignment decides both (u < p0:
   a baseline conversion, dated `assigned_date + U·window_days`; p0 ≤ u < p1: caused by the touches, dated
   uniformly between the first delivery and the window's end).  The conversion is the program's `conversion_type`; a treated customer who
   converted and whose offer has a value redeems it with `redeem_share` (`code_redeemed` or `credit_redeemed`,
   `program_id` and `offer_code` set: the business system knows the code).
3. **The true lift** per program: `mean(p1 over treated) − mean(p0 over held out)`, the expected value of the
   measured lift (treated conversion rate − control conversion rate) given who was assigned and contacted.

Every draw is a hash of (seed, the row's key, what is drawn), not a position in a stream: the same touch or
assignment draws the same with the same seed whatever else is in the input, so adding touches never changes earlier
draws, and the event ids (`sim:<touch_ref>:<kind>`) are stable (the outcome store records each once).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any, NamedTuple

import pyarrow as pa

from engage_assets.domain.loop_tables import CONVERSION_SCHEMA, OUTCOME_SCHEMA


def _default(**values: float) -> dict[str, float]:
    return dict(values)


@dataclass(frozen=True)
class ResponseParams:
    """The known process's parameters (module docstring).  Rates are probabilities; effects and shifts are on the
    log-odds scale."""

    window_days: float = 7.0
    base_rate: Mapping[str, float] = field(
        default_factory=lambda: _default(
            **{
                "proactive-refunds": 0.20,
                "win-back-campaigns": 0.06,
                "churn-prevention": 0.12,
                "abandoned-cart-recovery": 0.10,
            }
        )
    )
    default_base_rate: float = 0.08
    truth_slope: float = 1.0
    segment_shift: Mapping[str, float] = field(
        default_factory=lambda: _default(critical=-0.4, high=0.2, medium=0.0, low=-0.2)
    )
    offer_effect: Mapping[str, float] = field(
        default_factory=lambda: _default(premium=1.0, standard=0.7, engagement=0.4, basic=0.5)
    )
    default_offer_effect: float = 0.5
    channel_effect: Mapping[str, float] = field(
        default_factory=lambda: _default(email=0.2, sms=0.3, push=0.1, phone=0.6, **{"in-app": 0.1})
    )
    conversion_type: Mapping[str, str] = field(
        default_factory=lambda: {
            "proactive-refunds": "order_placed",
            "win-back-campaigns": "subscription_reactivated",
            "churn-prevention": "order_placed",
            "abandoned-cart-recovery": "cart_purchased",
        }
    )
    redeemed_type: Mapping[str, str] = field(
        default_factory=lambda: {"win-back-campaigns": "code_redeemed", "abandoned-cart-recovery": "code_redeemed"}
    )
    redeem_share: float = 0.8
    order_value_usd: float = 60.0  # median of a conversion's value (lognormal, sigma 0.6)
    bounce_rate: float = 0.02
    failure_rate: Mapping[str, float] = field(default_factory=lambda: _default(sms=0.03, push=0.05))
    permanent_share: float = 0.7
    open_rate: Mapping[str, float] = field(default_factory=lambda: _default(email=0.25, push=0.08))
    click_given_open: Mapping[str, float] = field(default_factory=lambda: _default(email=0.15, push=0.3))
    click_rate: Mapping[str, float] = field(default_factory=lambda: _default(sms=0.06))
    complaint_rate: float = 0.001
    unsubscribe_rate: Mapping[str, float] = field(default_factory=lambda: _default(email=0.02, sms=0.005))


class ProgramTruth(NamedTuple):
    """What the process expects for one program: the expected rates and the true lift they differ by."""

    treated_n: int
    control_n: int
    treated_rate: float  # mean p1 over the treated
    control_rate: float  # mean p0 over the held out
    true_lift: float  # treated_rate − control_rate


class Responses(NamedTuple):
    """The simulator's output: `outcomes` (OUTCOME_SCHEMA plus `permanent`), `conversions` (CONVERSION_SCHEMA) and
    the true lift per program id."""

    outcomes: pa.Table
    conversions: pa.Table
    true_lift: dict[str, ProgramTruth]


SIM_OUTCOME_SCHEMA = OUTCOME_SCHEMA.append(pa.field("permanent", pa.bool_()))
DELIVERABLE = ("email", "sms", "push")
_NORMAL = NormalDist()


def uniform(seed: int, *parts: str) -> float:
    """A deterministic uniform in [0, 1) of the seed and the parts (a hash, not a stream position)."""
    digest = hashlib.blake2b("|".join((str(seed), *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def logit(p: float) -> float:
    """log(p / (1 − p)), p clipped into (1e-6, 1 − 1e-6)."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    """1 / (1 + e^−x)."""
    return 1 / (1 + math.exp(-x))


class _Events:
    """Collects one touch's events as outcome rows."""

    def __init__(self, touch: Mapping[str, Any], loaded_at: datetime | None):
        self.touch, self.loaded_at = touch, loaded_at
        self.rows: list[dict[str, Any]] = []

    def add(self, event_type: str, at: datetime, permanent: bool = False) -> None:
        t = self.touch
        self.rows.append(
            {
                "event_id": f"sim:{t['touch_ref']}:{event_type}",
                "touch_ref": t["touch_ref"],
                "program_id": t["program_id"],
                "customer_id": t["customer_id"],
                "channel": t["channel"],
                "event_type": event_type,
                "occurred_at": at,
                "provider_id": t["provider_id"],
                "simulated": True,
                "loaded_at": self.loaded_at,
                "permanent": permanent,
            }
        )


def touch_events(
    touch: Mapping[str, Any], true_p: float, seed: int, params: ResponseParams, loaded_at: datetime | None = None
) -> tuple[list[dict[str, Any]], datetime | None]:
    """One sent touch's provider events, and when it was delivered (None: not delivered, or no provider events)."""
    channel = touch["channel"]
    if channel not in DELIVERABLE or not touch.get("provider_id"):
        return [], None

    def u(what: str) -> float:
        return uniform(seed, touch["touch_ref"], what)

    sent: datetime = touch["sent_at"]
    events = _Events(touch, loaded_at)
    fail = params.bounce_rate if channel == "email" else params.failure_rate.get(channel, 0.0)
    if u("fail") < fail:
        events.add(
            "bounce" if channel == "email" else "failed",
            sent + timedelta(seconds=30 + 60 * u("fail_t")),
            permanent=u("permanent") < params.permanent_share,
        )
        return events.rows, None
    delivered = sent + timedelta(seconds=5 + 115 * u("delivered_t"))
    events.add("delivered", delivered)
    opened = None
    if channel in params.open_rate:
        p_open = sigmoid(logit(params.open_rate[channel]) + params.truth_slope * logit(true_p))
        if u("open") < p_open:
            opened = delivered + timedelta(hours=48 * u("open_t") ** 2)
            events.add("open", opened)
    clicked = (opened is not None and u("click") < params.click_given_open.get(channel, 0.0)) or (
        channel in params.click_rate and u("click") < params.click_rate[channel]
    )
    if clicked:
        events.add("click", (opened or delivered) + timedelta(minutes=1 + 59 * u("click_t")))
    if channel == "email" and u("complaint") < params.complaint_rate:
        events.add("complaint", delivered + timedelta(hours=24 * u("complaint_t")), permanent=True)
    unsubscribe = params.unsubscribe_rate.get(channel, 0.0)
    if (opened is not None or channel == "sms") and u("unsubscribe") < unsubscribe:
        events.add("unsubscribe", (opened or delivered) + timedelta(minutes=2 + 8 * u("unsubscribe_t")))
    return events.rows, delivered


def _p0(assignment: Mapping[str, Any], true_p: float, params: ResponseParams) -> float:
    base = params.base_rate.get(assignment["program_id"], params.default_base_rate)
    shift = params.segment_shift.get(assignment.get("segment") or "", 0.0)
    return sigmoid(logit(base) + params.truth_slope * logit(true_p) + shift)


def _conversion(
    assignment: Mapping[str, Any], kind: str, at: datetime, seed: int, params: ResponseParams, loaded: datetime | None
) -> dict[str, Any]:
    offer = assignment["offer_id"]
    value = params.order_value_usd * math.exp(
        0.6 * _NORMAL.inv_cdf(min(max(uniform(seed, offer, "value"), 1e-9), 1 - 1e-9))
    )
    order = f"sim-order:{offer}" if kind in ("order_placed", "cart_purchased") else None
    return {
        "conversion_id": f"sim:{offer}:{kind}",
        "customer_id": assignment["customer_id"],
        "conversion_type": kind,
        "occurred_at": at,
        "value_usd": round(value, 2),
        "order_id": order,
        "offer_code": None,
        "program_id": None,
        "simulated": True,
        "loaded_at": loaded,
    }


def assignment_conversions(
    assignment: Mapping[str, Any],
    true_p: float,
    first_delivery: datetime | None,
    delivered_channels: set[str],
    seed: int,
    params: ResponseParams,
    loaded_at: datetime | None = None,
    first_send: datetime | None = None,
) -> tuple[list[dict[str, Any]], float, float]:
    """One assignment's conversions (none, one, or one and its redemption), and its p0 and p1.  `first_send`: the
    first send of the assignment's partition (any customer's), which opens the partition's response window."""
    p0 = _p0(assignment, true_p, params)
    start = datetime.combine(assignment["assigned_date"], datetime.min.time())
    opened = max(start, datetime.combine(first_send.date(), datetime.min.time())) if first_send else start
    window_end = opened + timedelta(days=params.window_days)
    treated = not assignment["holdout"] and first_delivery is not None and first_delivery < window_end
    p1 = p0
    if treated:
        lift = params.offer_effect.get(assignment.get("offer_type") or "", params.default_offer_effect)
        lift += max(params.channel_effect.get(c, 0.0) for c in delivered_channels)
        p1 = sigmoid(logit(p0) + lift)
    offer = assignment["offer_id"]
    draw = uniform(seed, offer, "convert")
    if draw >= p1:
        return [], p0, p1
    u = uniform(seed, offer, "convert_t")
    if draw < p0 or first_delivery is None:
        at = start + timedelta(days=params.window_days) * u
    else:
        at = first_delivery + (window_end - first_delivery) * u
    kind = params.conversion_type.get(assignment["program_id"], "order_placed")
    rows = [_conversion(assignment, kind, at, seed, params, loaded_at)]
    amount = float(assignment.get("amount_usd") or 0.0)
    if not assignment["holdout"] and amount > 0 and uniform(seed, offer, "redeem") < params.redeem_share:
        redeemed = params.redeemed_type.get(assignment["program_id"], "credit_redeemed")
        rows.append(
            {
                **rows[0],
                "conversion_id": f"sim:{offer}:{redeemed}",
                "conversion_type": redeemed,
                "value_usd": round(amount, 2),
                "offer_code": offer,
                "program_id": assignment["program_id"],
            }
        )
    return rows, p0, p1


def _truth_lookup(truth: pa.Table) -> Callable[[Mapping[str, Any]], float]:
    """A row's true_p: by (program_id, customer_id) when the truth has a program_id column, else by customer_id;
    0.5 (neutral) for a customer it lacks."""
    customers, p = truth.column("customer_id").to_pylist(), truth.column("true_p").to_pylist()
    if "program_id" in truth.column_names:
        by_program = dict(zip(zip(truth.column("program_id").to_pylist(), customers, strict=True), p, strict=True))
        return lambda row: by_program.get((row["program_id"], row["customer_id"]), 0.5)
    by_customer = dict(zip(customers, p, strict=True))
    return lambda row: by_customer.get(row["customer_id"], 0.5)


def simulate_responses(
    assignments: pa.Table,
    contacts: pa.Table,
    truth: pa.Table,
    seed: int,
    params: ResponseParams | None = None,
    loaded_at: datetime | None = None,
) -> Responses:
    """The provider events of every sent touch, the conversions of every assignment and the true lift per program
    (module docstring).  Pure: the same inputs and seed give the same output."""
    params = params or ResponseParams()
    truth_of = _truth_lookup(truth)
    outcomes: list[dict[str, Any]] = []
    delivered: dict[str, tuple[datetime, set[str]]] = {}  # offer_id -> (first delivery, channels delivered)
    first_send: dict[tuple[str, str], datetime] = {}  # (program, partition) -> its first send
    for touch in sorted(contacts.to_pylist(), key=lambda t: (t["sent_at"], t["touch_ref"])):
        first_send.setdefault((touch["program_id"], touch["partition_key"]), touch["sent_at"])
        rows, at = touch_events(touch, truth_of(touch), seed, params, loaded_at)
        outcomes.extend(rows)
        if at is not None:
            earliest, seen = delivered.get(touch["offer_id"], (at, set()))
            delivered[touch["offer_id"]] = (min(earliest, at), seen | {touch["channel"]})
    conversions: list[dict[str, Any]] = []
    sums: dict[str, list[float]] = {}  # program -> [treated n, sum p1, control n, sum p0]
    for a in assignments.to_pylist():
        first, channels = delivered.get(a["offer_id"], (None, set()))
        opened = first_send.get((a["program_id"], a["partition_key"]))
        rows, p0, p1 = assignment_conversions(a, truth_of(a), first, channels, seed, params, loaded_at, opened)
        conversions.extend(rows)
        s = sums.setdefault(a["program_id"], [0, 0.0, 0, 0.0])
        if a["holdout"]:
            s[2], s[3] = s[2] + 1, s[3] + p0
        else:
            s[0], s[1] = s[0] + 1, s[1] + p1
    truths = {}
    for program, (tn, tp, cn, cp) in sorted(sums.items()):
        treated_rate, control_rate = tp / tn if tn else 0.0, cp / cn if cn else 0.0
        truths[program] = ProgramTruth(int(tn), int(cn), treated_rate, control_rate, treated_rate - control_rate)
    return Responses(
        pa.Table.from_pylist(outcomes, schema=SIM_OUTCOME_SCHEMA),
        pa.Table.from_pylist(conversions, schema=CONVERSION_SCHEMA),
        truths,
    )
