"""Offer choice: the offer-effectiveness model decides which offer each candidate gets, within the budget.

Each candidate's score segment allows some of the program's offers (`offerChoice.alternatives`: its own only, or
its own and those of the segments scored below it — never a more generous one than its segment's).  For each
allowed offer:

    acceptance = sigmoid(logit(p) + discountElasticity × (discount − referenceDiscount))
    expected value (EV) = acceptance × value − cost

where `p` is the acceptance model's score (the probability of taking an offer at the reference discount), `value`
the candidate's `valueColumn` (lifetime value: what a retained or won-back customer is worth) and `cost` what the
offer costs (`offer_cost_usd`).  Candidates are taken best EV first; each gets its highest-EV allowed offer
that still fits the budget left, or none (dropped with reason `budget`).  A holdout candidate is decided the same
way (so treated and control stay comparable) but spends nothing: it is never contacted.

`OfferBudget` is the money left for one partition.  It carries over between calls: a caller that decides a
partition in several record batches makes one budget per partition and passes it to every batch's
`offer_decision.decide_offers(program, batch, budget)`; the partition then never spends more than its budget in total.
Everything here is pure (NumPy and Arrow), so it is tested without Dagster or a warehouse.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain.config import ProgramConfig, Segment

# Costs within a hundredth of a cent of the budget left still fit (float sums of cents).  The tolerance is on the
# total: an offer fits when total + cost <= amount + epsilon, never against a budget left clamped at zero (with the
# clamp, an offer overshooting by epsilon left 0, and a later offer of up to epsilon fitted again: hypothesis found
# 1.0000011 spent of 1.0).
_EPSILON = 1e-6


@dataclass
class OfferBudget:
    """The money one partition's offers may still cost; one object per partition, passed to every batch of it.

    `exhausted` is set by the score-prefix rule (programs without `offerChoice`): once an offer did not fit, no
    later one of the partition is made, in this batch or the next, as if the partition were one batch."""

    amount: float
    spent: float = 0.0
    exhausted: bool = False

    def __post_init__(self) -> None:
        if not self.amount > 0:
            raise ValueError(f"a budget must be positive, got {self.amount!r}")
        if self.spent < 0:
            raise ValueError(f"spent must be >= 0, got {self.spent!r}")

    @property
    def remaining(self) -> float:
        """What is left to spend (never negative)."""
        return max(0.0, self.amount - self.spent)

    def fits(self, cost: float) -> bool:
        """Whether an offer costing `cost` can still be made."""
        return cost <= self.amount - self.spent + _EPSILON

    def spend(self, cost: float) -> None:
        """Record an offer's cost; ValueError when it does not fit (the caller checks `fits` first)."""
        if cost < 0:
            raise ValueError(f"an offer cannot cost less than nothing, got {cost!r}")
        if not self.fits(cost):
            raise ValueError(f"an offer of ${cost:,.2f} does not fit the ${self.remaining:,.2f} left")
        self.spent += cost


@dataclass(frozen=True)
class OfferOption:
    """One offer a candidate may get: the segment whose offer it is, its type and its discount (None: a refund or
    credit, on which the acceptance does not depend)."""

    segment: str
    offer_type: str
    discount: float | None


@dataclass(frozen=True)
class OfferChoices:
    """What `choose_offers` decided, row by row (n candidates, k options)."""

    chosen: np.ndarray  # (n,) index of the chosen option, -1: none (not alive, or nothing fits the budget)
    acceptance: np.ndarray  # (n, k)
    expected_value: np.ndarray  # (n, k), -inf where the option is not allowed
    budget_left: np.ndarray  # (n,) budget left after the row's decision (nan: not decided)


# The columns an offer's cost reads: a full refund the order's value, a discount the monthly revenue.
ORDER_VALUE, MONTHLY_REVENUE = "order_value_usd", "monthly_revenue_usd"
COST_COLUMNS = (ORDER_VALUE, MONTHLY_REVENUE)


def offer_cost_usd(program: ProgramConfig, seg: Segment, table: pa.Table, rows: np.ndarray) -> np.ndarray:
    """Money an offer costs, in cents: refund/credit amounts, or discount × monthly revenue × months.

    Rounded as the offer is stored (`offer_value_usd`) and paid, so the budget spends what is stored and every
    caller (the choice, the streaming order's priority) ranks the same numbers.  Unrounded, a 465,000-candidate
    partition's stored offers added up to $0.35 over a budget its unrounded costs fitted."""
    return np.round(_unrounded_cost(seg, table, rows), 2)


def _unrounded_cost(seg: Segment, table: pa.Table, rows: np.ndarray) -> np.ndarray:
    n = len(rows)
    if seg.refundType == "full":
        return table.column(ORDER_VALUE).to_numpy()[rows] + (seg.additionalCredit or 0.0)
    if seg.refundType == "partial":
        return np.full(n, seg.refundAmount or 0.0) + (seg.additionalCredit or 0.0)
    if seg.refundType == "credit" or seg.creditAmount is not None:
        return np.full(n, seg.creditAmount or 0.0)
    monthly = table.column(MONTHLY_REVENUE).to_numpy(zero_copy_only=False)[rows]
    monthly = np.nan_to_num(monthly.astype(float), nan=0.0)
    return (seg.discount or 0.0) / 100.0 * monthly * (seg.duration or 1)


def acceptance_matrix(
    p: np.ndarray, options: Sequence[OfferOption], reference_discount: float, elasticity: float
) -> np.ndarray:
    """(n, k) acceptance per candidate and option: the model's probability shifted on the logit scale by the
    option's discount against the reference discount (no shift for an option without a discount)."""
    p = np.clip(np.nan_to_num(np.asarray(p, dtype=float), nan=0.0), 1e-6, 1 - 1e-6)
    shift = np.array([0.0 if o.discount is None else elasticity * (o.discount - reference_discount) for o in options])
    logit = np.log(p / (1 - p))[:, None] + shift[None, :]
    return np.asarray(1.0 / (1.0 + np.exp(-logit)))


def allowed_matrix(segment_index: np.ndarray, k: int, alternatives: str) -> np.ndarray:
    """(n, k): which options each row's segment allows.  Options are the segments' offers, in the segments'
    score order; `own`: the row's segment's offer only; `less-generous`: that one and those of lower segments.
    A row without a segment (-1) allows nothing."""
    seg = np.asarray(segment_index)
    cols = np.arange(k)[None, :]
    if alternatives == "own":
        return np.asarray(cols == seg[:, None])
    if alternatives == "less-generous":
        return np.asarray((cols <= seg[:, None]) & (seg[:, None] >= 0))
    raise ValueError(f"alternatives must be 'own' or 'less-generous', got {alternatives!r}")


def expected_values(acceptance: np.ndarray, value: np.ndarray, cost: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(n, k) expected value per row and option: acceptance × value − cost (a missing value counts as 0), -inf
    where the option is not allowed."""
    value = np.nan_to_num(np.asarray(value, dtype=float), nan=0.0)
    return np.asarray(np.where(allowed, acceptance * value[:, None] - cost, -np.inf))


def choose_offers(
    acceptance: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
    allowed: np.ndarray,
    alive: np.ndarray,
    holdout: np.ndarray,
    budget: OfferBudget,
) -> OfferChoices:
    """Each alive row's highest-EV allowed option that fits `budget` (module docstring); spends the budget."""
    n, k = cost.shape
    ev = expected_values(acceptance, value, cost, allowed)
    chosen = np.full(n, -1, dtype=np.int64)
    left = np.full(n, np.nan)
    live = np.flatnonzero(alive & allowed.any(axis=1))
    if not len(live):
        return OfferChoices(chosen, acceptance, ev, left)
    best = ev[live].argmax(axis=1)
    best_cost = cost[live, best]
    paid = ~holdout[live]
    # The budget does not bind (every row's best offer fits when its turn comes, a holdout's too: it must fit what
    # is left even though it spends nothing): every row gets its best offer, as the loop below would decide.
    if budget.fits(float(best_cost[paid].sum()) + float(best_cost[~paid].max(initial=0.0))):
        chosen[live] = best
        # Spent as the loop spends it, one offer after another (a partition decided in batches adds up the same).
        running = np.cumsum(np.concatenate([[budget.spent], np.where(paid, best_cost, 0.0)]))[1:]
        left[live] = np.maximum(0.0, budget.amount - running)
        budget.spent = float(running[-1])
        return OfferChoices(chosen, acceptance, ev, left)
    order = live[np.argsort(-ev[live, best], kind="stable")]  # best EV first
    chosen[order], left[order], budget.spent = _spend_in_order(
        order, ev, cost, allowed, holdout, float(budget.amount), float(budget.spent)
    )
    return OfferChoices(chosen, acceptance, ev, left)


SPEND_WINDOW = 1_024  # rows decided per vectorized step while the budget binds
# A vectorized step that settles fewer than this many rows (each row's best does not fit, a cheaper option does and
# spends) hands the next LOOP_ROWS rows to the plain loop: otherwise such rows cost a window's array work each.
MIN_STEP, LOOP_ROWS = 4, 64


def _spend_in_order(
    order: np.ndarray,
    ev: np.ndarray,
    cost: np.ndarray,
    allowed: np.ndarray,
    holdout: np.ndarray,
    amount: float,
    total: float,
    window: int = SPEND_WINDOW,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The binding budget, decided as this loop decides it, row by row in `order` (each row's allowed options best EV
    first, ties by option), the total spent from the partition's first batch carried in `total`:

        for each row: take the first option whose cost <= (amount - total) + epsilon; unless the row is held
        out, total += its cost; the row's budget left is max(0, amount - total)

    but a window of rows at a time, in two vectorized steps that give the loop's own floats (NumPy's cumulative sum
    adds one after another, as the loop does; everything in float64): (A) the leading rows whose best offer fits as
    the spending goes; (B) from a row whose best does not fit, the budget left stays the same until a row spends, so
    each row takes its best option that fits it, up to and including the first row whose cost changes the total.
    Where the steps settle only a row or two at a time, the loop itself takes the next rows.  A 465,000-candidate
    partition spent its budget after ~50,000 offers; the loop's Python went on through the rest (0.5 s).  Returns the
    chosen option and budget left per row of `order`, and the new total."""
    spending = _Spending(order, (ev, cost, allowed, holdout), amount, total)
    t, looped = 0, False
    while t < spending.m:
        if looped:  # the vectorized steps settled too few rows last time: the loop takes a few
            t, looped = spending.loop(t, min(spending.m, t + LOOP_ROWS)), False
            continue
        start = t
        t = spending.prefix(t, min(spending.m, t + window))
        if t < min(spending.m, start + window):
            t = spending.at_constant_budget(t, min(spending.m, start + window))
        looped = t - start < MIN_STEP
    return spending.chosen, spending.left, spending.total


class _Spending:
    """`_spend_in_order`'s state: the rows in order (float64), what each chose, the budget left after each, the total."""

    def __init__(self, order: np.ndarray, arrays: tuple[np.ndarray, ...], amount: float, total: float):
        ev, cost, allowed, holdout = arrays  # (n, k), (n, k), (n, k), (n,): taken in `order`
        self.m, self.amount, self.total = len(order), float(amount), float(total)
        self.chosen, self.left = np.full(self.m, -1, dtype=np.int64), np.empty(self.m)
        self.cost = np.asarray(cost, dtype=np.float64)[order]
        self.ev = np.asarray(ev, dtype=np.float64)[order]
        self.ok, self.held = np.asarray(allowed, dtype=bool)[order], np.asarray(holdout, dtype=bool)[order]
        rows = np.arange(self.m)
        self.best = self.ev.argmax(axis=1)  # the first of equal EVs, as a stable sort by -EV puts first
        self.best_cost = self.cost[rows, self.best]
        self.best_ok = self.ok[rows, self.best]  # a row whose every allowed EV is -inf: its argmax may be disallowed

    def prefix(self, t: int, stop: int) -> int:
        """(A) Rows t.. whose best offer fits as the spending goes; the first row after them."""
        w = slice(t, stop)
        running = np.cumsum(np.concatenate([[self.total], np.where(self.held[w], 0.0, self.best_cost[w])]))
        fits = self.best_ok[w] & (self.best_cost[w] <= (self.amount - running[:-1]) + _EPSILON)
        a = int(np.argmin(fits)) if not fits.all() else len(fits)
        self.chosen[t : t + a] = self.best[t : t + a]
        self.left[t : t + a] = np.maximum(0.0, self.amount - running[1 : a + 1])
        self.total = float(running[a])
        return t + a

    def at_constant_budget(self, t: int, stop: int) -> int:
        """(B) Rows t.. at the budget left now, up to and including the first whose cost changes the total; the
        first row after them."""
        w = slice(t, stop)
        room = (self.amount - self.total) + _EPSILON
        fit = self.ok[w] & (self.cost[w] <= room)
        pick = np.where(fit.any(axis=1), np.where(fit, self.ev[w], -np.inf).argmax(axis=1), -1)
        paid = np.where(pick >= 0, self.cost[w][np.arange(len(pick)), np.maximum(pick, 0)], 0.0)
        spends = (pick >= 0) & ~self.held[w] & (paid != 0)  # a negative cost gives money back: it changes the total
        b = int(np.argmax(spends)) + 1 if spends.any() else len(pick)
        self.chosen[t : t + b], self.left[t : t + b] = pick[:b], max(0.0, self.amount - self.total)
        if spends.any():
            self.total += float(paid[b - 1])
            self.left[t + b - 1] = max(0.0, self.amount - self.total)
        return t + b

    def loop(self, t: int, stop: int) -> int:
        """Rows t..stop by the loop itself (Python lists index faster than arrays); `stop`."""
        prefs = np.argsort(-self.ev[t:stop], axis=1, kind="stable").tolist()
        costs, ok, held = self.cost[t:stop].tolist(), self.ok[t:stop].tolist(), self.held[t:stop].tolist()
        amount, total = self.amount, self.total
        for i in range(stop - t):
            for j in prefs[i]:
                if not ok[i][j]:
                    break  # the rest are -inf: not allowed
                c: float = costs[i][j]
                if c <= (amount - total) + _EPSILON:
                    self.chosen[t + i] = j
                    if not held[i]:
                        total += c
                    break
            self.left[t + i] = max(0.0, amount - total)
        self.total = total
        return stop


def best_scored_within_budget(
    scores: np.ndarray, offer_index: np.ndarray, cost: np.ndarray, holdout: np.ndarray, budget: OfferBudget
) -> np.ndarray:
    """Without `offerChoice`: each row keeps its segment's offer (`offer_index`, -1: none) if it is in the
    best-scored prefix whose contacted offers fit the budget; -1 after.  The holdout is cut at the same rank (it
    costs nothing, but must stay comparable to the treated group for lift); once an offer did not fit, later
    batches of the partition make none either (`budget.exhausted`).  Spends the budget."""
    offer_index = np.array(offer_index, dtype=np.int64)
    ranked = np.flatnonzero(offer_index >= 0)
    ranked = ranked[np.argsort(-scores[ranked], kind="stable")]
    paid = np.where(holdout[ranked], 0.0, cost[ranked, offer_index[ranked]])
    fits = (np.cumsum(paid) <= (budget.amount - budget.spent) + _EPSILON) & (not budget.exhausted)
    if not fits.all():
        fits &= np.cumsum(~fits) == 0  # a prefix: nothing after the first offer that did not fit
        budget.exhausted = True
    budget.spend(float(paid[fits].sum()))
    offer_index[ranked[~fits]] = -1
    return offer_index


def choice_columns(
    options: Sequence[OfferOption], cost: np.ndarray, choices: OfferChoices
) -> dict[str, np.ndarray | pa.Array]:
    """The columns the offers table carries for a choice: `offer_segment` (whose offer was chosen),
    `expected_value_usd` (the chosen offer's EV) and `offer_choice` (`choice_records`)."""
    rows = np.arange(len(choices.chosen))
    j = np.maximum(choices.chosen, 0)
    ev = np.where(choices.chosen >= 0, choices.expected_value[rows, j], np.nan) if len(rows) else np.zeros(0)
    names = np.array([o.segment for o in options] + [None], dtype=object)
    return {
        "offer_segment": names[choices.chosen],
        "expected_value_usd": np.round(ev, 2),
        "offer_choice": choice_records(options, cost, choices),
    }


def _numbers(values: np.ndarray, decimals: int) -> pa.Array:
    """Floats as JSON number text, rounded (Arrow's shortest round-trip form: `0.5`, `3`, `1e+21`)."""
    return pa.array(np.round(np.asarray(values, dtype=float), decimals) + 0.0).cast(pa.string())


def choice_records(options: Sequence[OfferOption], cost: np.ndarray, choices: OfferChoices) -> pa.Array:
    """Per row, the choice and its inputs as JSON text (stored with the candidate): every allowed offer with its
    acceptance, cost and EV, the chosen offer, and the budget left after the decision; null for an undecided row.
    Built column-wise with Arrow's string kernels (a JSON encoder per row costs seconds on 100k rows)."""
    n = len(choices.chosen)
    parts = []
    for j, o in enumerate(options):
        head = json.dumps({"offerType": o.offer_type, "segment": o.segment}, separators=(",", ":"))[:-1]
        fragment = pc.binary_join_element_wise(
            pa.scalar(head + ',"acceptance":'),
            _numbers(choices.acceptance[:, j], 4),
            ',"costUsd":',
            _numbers(cost[:, j], 2),
            ',"expectedValueUsd":',
            _numbers(np.where(np.isfinite(choices.expected_value[:, j]), choices.expected_value[:, j], 0.0), 2),
            "},",
            "",
        )
        allowed = pa.array(np.isfinite(choices.expected_value[:, j]))
        parts.append(pc.if_else(allowed, fragment, pa.scalar("")))
    # Each allowed offer's object ends in a comma; the last one's is trimmed (skipping nulls in the join instead
    # mis-sizes the result on rows where every part is null, pyarrow 26).
    listed = pc.utf8_rtrim(pc.binary_join_element_wise(*parts, ""), characters=",")
    names = pa.array([json.dumps(o.offer_type) for o in options], pa.string())
    chosen = pa.array(np.maximum(choices.chosen, 0)) if n else pa.array([], pa.int64())
    left = np.where(np.isfinite(choices.budget_left), choices.budget_left, 0.0)
    doc = pc.binary_join_element_wise(
        pa.scalar('{"candidates":['),
        listed,
        '],"chosen":',
        names.take(chosen),
        ',"budgetLeftUsd":',
        _numbers(left, 2),
        "}",
        "",
    )
    return pc.if_else(pa.array(choices.chosen >= 0), doc, pa.nulls(n, pa.string()))


def choice_markdown(segments: Sequence[str], chosen: Sequence[str], expected_value: Sequence[float]) -> str:
    """A table for the offers stage's metadata: per score segment and chosen offer, how many and the mean EV."""
    cells: dict[tuple[str, str], list[float]] = {}
    for s, c, v in zip(segments, chosen, expected_value, strict=True):
        cells.setdefault((s, c), []).append(float(v))
    if not cells:
        return "No offers were chosen."
    lines = ["| segment | chosen offer | offers | mean expected value (USD) |", "|---|---|---:|---:|"]
    for (s, c), vs in sorted(cells.items()):
        lines.append(f"| {s} | {c} | {len(vs)} | {sum(vs) / len(vs):,.2f} |")
    return "\n".join(lines)
