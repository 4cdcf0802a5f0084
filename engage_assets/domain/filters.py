"""The filter chain: typed rules compiled to one vectorised SQL pass over the whole batch.

Each rule turns its config parameters (`engage_assets.domain.filter_params`, which says the comparison each
threshold uses) into one or more *checks*: a keep condition over candidate columns and the reason a row fails it.
A check is three-valued (SQL's Kleene logic): TRUE keeps the row, FALSE rejects it with the check's reason, NULL (a
value the check needs is missing) rejects it with the check's *unknown* reason, which names the missing value.  A
row is never rejected for a value its rule does not need: `delay_days > 2 OR item_condition = 'damaged'` is TRUE
for a damaged order whatever its delay.

The chain becomes a single `CASE` expression that gives, per row, the first check (in config order) it fails and
whether it failed on FALSE or on NULL, so one scan of the batch gives the eligible rows, every rejected row with its
filter and its specific reason, and the per-filter removed counts.  The same compiled SQL runs over a
warehouse-sized Arrow table or over a single event.

History columns the enrichment step provides (see `engage_assets.domain.sources`): `days_since_program_offer`,
`program_offers_365d` (this program), `all_offers_91d` (every program: cross-program pressure).  The abandoned-cart
rules read the cart event's `cart_value` and `all_items_in_stock`, and `recovery_messages_7d` (recovery messages
the customer had from the program in the last 7 days).  Two checks apply where the batch carries their column (as
`refundable` does for eligibility): trust requires `payment_method_on_file`, eligibility requires `cart_active` (the
cart was neither purchased nor expired).  A rule's reasons name only what it checked on that batch.

The `expression` rule is a condition written in the config (`domain.filter_expression`: checked at load, compiled
here like any other check, with the config's reason for FALSE and an unknown reason for NULL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from engage_assets.domain.filter_params import (
    TIER_RANK,
    CartValueParams,
    ChurnReasonParams,
    ChurnSignalParams,
    ChurnTimingParams,
    CustomerValueParams,
    EligibilityParams,
    ExpressionParams,
    FilterParams,
    FrequencyCapParams,
    InventoryParams,
    IssueSeverityParams,
    TrustParams,
)


def _q(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


@dataclass(frozen=True)
class Check:
    """One keep condition of a rule: TRUE keeps, FALSE rejects with `reason`, NULL with `unknown` (or `reason`)."""

    keep_sql: str
    reason: str
    unknown: str | None = None

    @property
    def unknown_reason(self) -> str:
        return self.unknown or self.reason


@dataclass(frozen=True)
class FilterRule:
    """A rule: its parameter model, the columns it reads, and either its checks or one keep condition and reason
    (each a function of the parameters and the batch's available columns)."""

    params: type[FilterParams]
    columns: Callable[[Any], list[str]]  # columns the rule reads
    keep: Callable[[Any, set[str]], str] | None = None  # one SQL keep-condition …
    reason: Callable[[Any, set[str]], str] | None = None  # … and why a row failed it
    checks: Callable[[Any, set[str]], list[Check]] | None = None  # or several checks, in order

    def checks_for(self, params: Any, available: set[str]) -> list[Check]:
        if self.checks is not None:
            return self.checks(params, available)
        if self.keep is None or self.reason is None:
            raise TypeError("a FilterRule needs checks, or keep and reason")
        return [Check(self.keep(params, available), self.reason(params, available))]


def _trust_checks(p: TrustParams, cols: set[str]) -> list[Check]:
    checks = [
        Check(
            f"account_status IN ({_q(p.allowedAccountStatuses)})",
            f"account status not in {p.allowedAccountStatuses}",
            "account status unknown",
        )
    ]
    if "payment_method_on_file" in cols:
        checks.append(Check("coalesce(payment_method_on_file, false)", "no payment method on file"))
    return checks


def _severity_checks(p: IssueSeverityParams, cols: set[str]) -> list[Check]:
    days = p.minDelayDays
    if p.includeDamaged:
        checks = [
            # Only an order that is not damaged needs its delay; a damaged one qualifies whatever the delay says.
            Check(
                "delay_days IS NOT NULL OR item_condition = 'damaged'",
                "delay_days unknown (not an integer) and item not damaged",
                "delay_days and item_condition unknown",
            ),
            Check(
                f"delay_days > {days} OR item_condition = 'damaged'",
                f"delayed {days} days or less and item not damaged",
                f"delayed {days} days or less and item_condition unknown",
            ),
        ]
    else:
        checks = [Check(f"delay_days > {days}", f"delayed {days} days or less", "delay_days unknown (not an integer)")]
    if p.excludeExistingComplaints:
        checks.append(
            Check("customer_complaints = 0", "customer already complained about the order", "complaints unknown")
        )
    return checks


def _value_checks(p: CustomerValueParams, cols: set[str]) -> list[Check]:
    checks = [
        Check(
            f"lifetime_value_usd >= {p.minLifetimeValue}",
            f"lifetime value below ${p.minLifetimeValue:g}",
            "lifetime value unknown",
        )
    ]
    if p.minOrderFrequency is not None:
        checks.append(
            Check(
                f"order_frequency >= {p.minOrderFrequency}",
                f"fewer than {p.minOrderFrequency:g} orders in the last year",
                "order frequency unknown",
            )
        )
    if p.minSubscriptionTier is not None:
        allowed = [t for t, r in TIER_RANK.items() if r >= TIER_RANK[p.minSubscriptionTier]]
        checks.append(
            Check(
                f"subscription_tier IN ({_q(allowed)})",
                f"subscription tier below {p.minSubscriptionTier}",
                "subscription tier unknown",
            )
        )
    return checks


def _eligibility_checks(p: EligibilityParams, cols: set[str]) -> list[Check]:
    checks = [
        Check(
            f"coalesce(days_since_program_offer > {p.lookbackDays}, true)",
            f"offer from this program in the last {p.lookbackDays} days",
        )
    ]
    if p.excludeOptedOut:
        checks.append(Check("NOT coalesce(marketing_opt_out, false)", "opted out of marketing"))
    if p.requireRefundable or (p.requireRefundable is None and "refundable" in cols):
        checks.append(Check("refundable", "order not refundable", "refundability unknown"))
    if "cart_active" in cols:
        checks.append(Check("cart_active", "the cart was purchased or expired", "cart state unknown"))
    return checks


def _eligibility_columns(p: EligibilityParams) -> list[str]:
    return ["days_since_program_offer", "marketing_opt_out"] + (["refundable"] if p.requireRefundable else [])


def _signal_checks(p: ChurnSignalParams, cols: set[str]) -> list[Check]:
    signals = [
        f"engagement_change <= -{p.minEngagementDecline}",
        f"login_frequency < {p.maxLoginFrequencyRatio} * historical_avg",
        f"days_since_last_purchase >= {p.minDaysSinceLastPurchase}",
    ]
    known = " + ".join(f"coalesce(CAST(({s}) AS INTEGER), 0)" for s in signals)
    unknown = " + ".join(f"CAST(({s}) IS NULL AS INTEGER)" for s in signals)
    need = p.minSignalsRequired
    # Kleene "at least N of these": TRUE when the known signals suffice, NULL when only unknown ones could.
    keep = f"CASE WHEN ({known}) >= {need} THEN true WHEN ({known}) + ({unknown}) >= {need} THEN NULL ELSE false END"
    return [
        Check(
            keep,
            f"fewer than {need} churn signals",
            f"fewer than {need} churn signals known (signal inputs unknown)",
        )
    ]


def _cap_checks(p: FrequencyCapParams, cols: set[str]) -> list[Check]:
    checks = []
    if p.maxRefundsPerYear is not None:
        n = p.maxRefundsPerYear
        checks.append(
            Check(
                f"coalesce(program_offers_365d, 0) < {n}",
                f"frequency cap: {n} or more offers from this program in the last 365 days",
            )
        )
    if p.maxOffersPerQuarter is not None:
        n = p.maxOffersPerQuarter
        checks.append(
            Check(f"coalesce(all_offers_91d, 0) < {n}", f"frequency cap: {n} or more offers in the last 91 days")
        )
    if p.maxWinBackAttempts is not None:
        n = p.maxWinBackAttempts
        checks.append(
            Check(
                f"win_back_attempts < {n}",
                f"frequency cap: {n} or more win-back attempts",
                "frequency cap: win-back attempts unknown",
            )
        )
    if p.maxRecoveryEmailsPerWeek is not None:
        n = p.maxRecoveryEmailsPerWeek
        checks.append(
            Check(
                f"coalesce(recovery_messages_7d, 0) < {n}",
                f"frequency cap: {n} or more recovery messages in the last 7 days",
            )
        )
    return checks


def _cap_columns(p: FrequencyCapParams) -> list[str]:
    return (
        ([] if p.maxRefundsPerYear is None else ["program_offers_365d"])
        + ([] if p.maxOffersPerQuarter is None else ["all_offers_91d"])
        + ([] if p.maxWinBackAttempts is None else ["win_back_attempts"])
        + ([] if p.maxRecoveryEmailsPerWeek is None else ["recovery_messages_7d"])
    )


def _churn_reason_checks(p: ChurnReasonParams, cols: set[str]) -> list[Check]:
    checks = [
        Check(f"churn_reason IN ({_q(p.addressableReasons)})", "churn reason not addressable", "churn reason unknown")
    ]
    if p.excludeReasons:
        checks.append(Check(f"churn_reason NOT IN ({_q(p.excludeReasons)})", "churn reason excluded"))
    return checks


def _inventory_checks(p: InventoryParams, cols: set[str]) -> list[Check]:
    # An unknown stock state is not "in stock": a recovery message must not push an item the shop cannot ship.
    keep = "coalesce(all_items_in_stock, false)" if p.requireInStock else "true"
    return [Check(keep, "an item in the cart is out of stock")]


FILTER_RULES: dict[str, FilterRule] = {
    "trust": FilterRule(TrustParams, lambda p: ["account_status"], checks=_trust_checks),
    "issue-severity": FilterRule(
        IssueSeverityParams,
        lambda p: ["delay_days", "item_condition"] + (["customer_complaints"] if p.excludeExistingComplaints else []),
        checks=_severity_checks,
    ),
    "customer-value": FilterRule(
        CustomerValueParams,
        lambda p: (
            ["lifetime_value_usd"]
            + (["order_frequency"] if p.minOrderFrequency is not None else [])
            + (["subscription_tier"] if p.minSubscriptionTier else [])
        ),
        checks=_value_checks,
    ),
    "eligibility": FilterRule(EligibilityParams, _eligibility_columns, checks=_eligibility_checks),
    "churn-timing": FilterRule(
        ChurnTimingParams,
        lambda p: ["days_since_churn"],
        checks=lambda p, c: [
            Check(
                f"days_since_churn BETWEEN {p.minDaysSinceChurn} AND {p.maxDaysSinceChurn}",
                f"churned outside {p.minDaysSinceChurn}-{p.maxDaysSinceChurn} days ago",
                "days since churn unknown",
            )
        ],
    ),
    "churn-reason": FilterRule(ChurnReasonParams, lambda p: ["churn_reason"], checks=_churn_reason_checks),
    "churn-signal": FilterRule(
        ChurnSignalParams,
        lambda p: ["engagement_change", "login_frequency", "historical_avg", "days_since_last_purchase"],
        checks=_signal_checks,
    ),
    "frequency-cap": FilterRule(FrequencyCapParams, _cap_columns, checks=_cap_checks),
    "cart-value": FilterRule(
        CartValueParams,
        lambda p: ["cart_value"],
        checks=lambda p, c: [
            Check(f"cart_value >= {p.minCartValue}", f"cart value < {p.minCartValue:g}", "cart value unknown")
        ],
    ),
    "inventory": FilterRule(
        InventoryParams, lambda p: ["all_items_in_stock"] if p.requireInStock else [], checks=_inventory_checks
    ),
    # A condition from the config (`domain.filter_expression`): its own reasons, NULL rejected as unknown.
    "expression": FilterRule(
        ExpressionParams,
        lambda p: list(p.parsed.columns),
        checks=lambda p, c: [Check(p.parsed.sql, p.reason, p.unknown_reason)],
    ),
}


def validate_filter_parameters(rule: str, parameters: dict[str, Any]) -> FilterParams:
    """Parse a rule's parameters; raise ValueError with the rule's name and the bad field."""
    try:
        return FILTER_RULES[rule].params.model_validate(parameters)
    except ValidationError as e:
        problems = "; ".join(
            f"parameters.{'.'.join(str(x) for x in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            if err["loc"]
            else err["msg"].removeprefix("Value error, ")
            for err in e.errors()
        )
        raise ValueError(f"filter {rule!r}: {problems}") from None
    except ValueError as e:  # raised by a model_post_init cross-field check
        raise ValueError(f"filter {rule!r}: {e}") from None


@dataclass(frozen=True)
class CompiledFilter:
    filter_id: str
    keep_sql: str  # all the checks at once (TRUE: kept)
    reason: str  # every reason the filter can give, for a summary; a rejected row carries its check's own
    columns: list[str]
    checks: tuple[Check, ...] = ()


def compile_chain(filters: Sequence[Any], available: set[str]) -> list[CompiledFilter]:
    """Compile config FilterSpecs (already in order) against the batch's columns; a missing column is an error."""
    compiled = []
    for spec in filters:
        rule = FILTER_RULES[spec.rule]
        params = validate_filter_parameters(spec.rule, spec.parameters)
        missing = [c for c in rule.columns(params) if c not in available]
        if missing:
            raise ValueError(f"filter {spec.filterId!r} needs column(s) {missing} that the source does not provide")
        checks = tuple(rule.checks_for(params, available))
        keep = checks[0].keep_sql if len(checks) == 1 else " AND ".join(f"({c.keep_sql})" for c in checks)
        reason = "; or ".join(dict.fromkeys(c.reason for c in checks))
        compiled.append(CompiledFilter(spec.filterId, keep, reason, rule.columns(params), checks))
    return compiled


def columns_judged(filters: Sequence[Any]) -> set[str]:
    """The columns the chain's rules read: a NULL there is the rule's to judge (it may not need the value)."""
    out: set[str] = set()
    for spec in filters:
        out.update(FILTER_RULES[spec.rule].columns(validate_filter_parameters(spec.rule, spec.parameters)))
    return out


@dataclass(frozen=True)
class ChainOutcomes:
    """What the codes of `rejection_code_sql` mean: per code, the filter's position in the chain and the reason."""

    filter_index: np.ndarray
    reasons: list[str]


def rejection_code_sql(chain: Sequence[CompiledFilter]) -> str:
    """Per row, the first check of the chain (in order) it fails and how — code 2k when check k is FALSE, 2k+1
    when it is NULL — or NULL when it passes them all: `coalesce(CASE (keep_0) WHEN true THEN NULL WHEN false
    THEN 0 ELSE 1 END, …)`, each check evaluated once and only for rows every earlier check kept."""
    checks = [c for f in chain for c in f.checks]
    if not checks:
        return "CAST(NULL AS INTEGER)"
    codes = [
        f"CASE ({c.keep_sql}) WHEN true THEN CAST(NULL AS INTEGER) WHEN false THEN {2 * k} ELSE {2 * k + 1} END"
        for k, c in enumerate(checks)
    ]
    return codes[0] if len(codes) == 1 else f"coalesce({', '.join(codes)})"


def chain_outcomes(chain: Sequence[CompiledFilter]) -> ChainOutcomes:
    """The meaning of each code `rejection_code_sql(chain)` gives."""
    index, reasons = [], []
    for i, f in enumerate(chain):
        for c in f.checks:
            index += [i, i]
            reasons += [c.reason, c.unknown_reason]
    return ChainOutcomes(np.array(index, dtype=np.int32), reasons)
