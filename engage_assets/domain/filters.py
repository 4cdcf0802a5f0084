"""The filter chain: typed rules compiled to one vectorised SQL pass over the whole batch.

Each rule turns its config parameters into a *keep* condition over candidate columns.  The chain becomes a
single `CASE` expression that gives the first filter (in config order) a row fails, so one scan of the batch
gives the eligible rows, every rejected row with its filter and reason, and the per-filter removed counts.
The same compiled SQL runs over a warehouse-sized Arrow table or over a single event.

History columns the enrichment step provides (see `engage_assets.domain.sources`): `days_since_program_offer`,
`program_offers_365d` (this program), `all_offers_91d` (every program: cross-program pressure).  The abandoned-cart
rules read the cart event's `cart_value` and `all_items_in_stock`, and `recovery_messages_7d` (recovery messages
the customer had from the program in the last 7 days).  Two checks apply where the batch carries their column (as
`refundable` does for eligibility): trust requires `payment_method_on_file`, eligibility requires `cart_active` (the
cart was neither purchased nor expired).  A rule's reason names only what it checked on that batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TIER_RANK = {"basic": 0, "standard": 1, "premium": 2, "premium_plus": 3}


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrustParams(_Params):
    allowedAccountStatuses: list[str] = Field(default_factory=lambda: ["active"], min_length=1)


class IssueSeverityParams(_Params):
    minDelayDays: int = Field(ge=0)
    includeDamaged: bool = True
    excludeExistingComplaints: bool = True


class CustomerValueParams(_Params):
    minLifetimeValue: float = Field(default=0, ge=0)
    minOrderFrequency: float | None = Field(default=None, ge=0)
    minSubscriptionTier: str | None = None

    def model_post_init(self, _: Any) -> None:
        if self.minSubscriptionTier is not None and self.minSubscriptionTier not in TIER_RANK:
            raise ValueError(f"minSubscriptionTier must be one of {list(TIER_RANK)}")


class EligibilityParams(_Params):
    lookbackDays: int = Field(default=90, ge=1)
    excludeOptedOut: bool = True
    requireRefundable: bool | None = None  # None: required when the source has a `refundable` column


class ChurnTimingParams(_Params):
    minDaysSinceChurn: int = Field(ge=0)
    maxDaysSinceChurn: int = Field(ge=0)

    def model_post_init(self, _: Any) -> None:
        if self.maxDaysSinceChurn < self.minDaysSinceChurn:
            raise ValueError("maxDaysSinceChurn must be >= minDaysSinceChurn")


class ChurnReasonParams(_Params):
    addressableReasons: list[str] = Field(min_length=1)
    excludeReasons: list[str] = Field(default_factory=list)


class ChurnSignalParams(_Params):
    minEngagementDecline: float = Field(gt=0, le=1)
    maxLoginFrequencyRatio: float = Field(gt=0, le=1)
    minDaysSinceLastPurchase: int = Field(ge=0)
    minSignalsRequired: int = Field(ge=1, le=3)


class FrequencyCapParams(_Params):
    maxRefundsPerYear: int | None = Field(default=None, ge=1)
    maxOffersPerQuarter: int | None = Field(default=None, ge=1)
    maxWinBackAttempts: int | None = Field(default=None, ge=1)
    maxRecoveryEmailsPerWeek: int | None = Field(default=None, ge=1)

    def model_post_init(self, _: Any) -> None:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(f"frequency-cap needs at least one of {', '.join(type(self).model_fields)}")


class CartValueParams(_Params):
    minCartValue: float = Field(ge=0)


class InventoryParams(_Params):
    requireInStock: bool = True


def _q(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


@dataclass(frozen=True)
class FilterRule:
    params: type[_Params]
    columns: Callable[[Any], list[str]]  # columns the rule reads
    keep: Callable[[Any, set[str]], str]  # SQL keep-condition (params, available columns)
    reason: Callable[[Any, set[str]], str]  # why a row failed, for people (params, available columns)


def _trust_keep(p: TrustParams, cols: set[str]) -> str:
    keep = f"account_status IN ({_q(p.allowedAccountStatuses)})"
    return f"{keep} AND coalesce(payment_method_on_file, false)" if "payment_method_on_file" in cols else keep


def _trust_reason(p: TrustParams, cols: set[str]) -> str:
    """Why a row failed trust, naming the payment check only where the batch carries its column."""
    reason = f"account status not in {p.allowedAccountStatuses}"
    return f"{reason} or no payment method on file" if "payment_method_on_file" in cols else reason


def _severity_keep(p: IssueSeverityParams, cols: set[str]) -> str:
    issue = f"delay_days > {p.minDelayDays}"
    if p.includeDamaged:
        issue = f"({issue} OR item_condition = 'damaged')"
    return f"{issue} AND customer_complaints = 0" if p.excludeExistingComplaints else issue


def _value_keep(p: CustomerValueParams, cols: set[str]) -> str:
    parts = [f"lifetime_value_usd >= {p.minLifetimeValue}"]
    if p.minOrderFrequency is not None:
        parts.append(f"order_frequency >= {p.minOrderFrequency}")
    if p.minSubscriptionTier is not None:
        allowed = [t for t, r in TIER_RANK.items() if r >= TIER_RANK[p.minSubscriptionTier]]
        parts.append(f"subscription_tier IN ({_q(allowed)})")
    return " AND ".join(parts)


def _eligibility_keep(p: EligibilityParams, cols: set[str]) -> str:
    parts = [f"coalesce(days_since_program_offer > {p.lookbackDays}, true)"]
    if p.excludeOptedOut:
        parts.append("NOT coalesce(marketing_opt_out, false)")
    if p.requireRefundable or (p.requireRefundable is None and "refundable" in cols):
        parts.append("refundable")
    if "cart_active" in cols:
        parts.append("cart_active")
    return " AND ".join(parts)


def _eligibility_reason(p: EligibilityParams, cols: set[str]) -> str:
    """Why a row failed eligibility: a cart batch's checks, or a batch program's."""
    if "cart_active" in cols:
        return "opted out, or the cart was purchased or expired"
    return f"offer from this program in the last {p.lookbackDays} days, opted out, or order not refundable"


def _eligibility_columns(p: EligibilityParams) -> list[str]:
    return ["days_since_program_offer", "marketing_opt_out"] + (["refundable"] if p.requireRefundable else [])


def _signal_keep(p: ChurnSignalParams, cols: set[str]) -> str:
    signals = [
        f"CAST(engagement_change <= -{p.minEngagementDecline} AS INTEGER)",
        f"CAST(login_frequency < {p.maxLoginFrequencyRatio} * historical_avg AS INTEGER)",
        f"CAST(days_since_last_purchase >= {p.minDaysSinceLastPurchase} AS INTEGER)",
    ]
    return f"({' + '.join(f'coalesce({s}, 0)' for s in signals)}) >= {p.minSignalsRequired}"


def _cap_keep(p: FrequencyCapParams, cols: set[str]) -> str:
    parts = []
    if p.maxRefundsPerYear is not None:
        parts.append(f"coalesce(program_offers_365d, 0) < {p.maxRefundsPerYear}")
    if p.maxOffersPerQuarter is not None:
        parts.append(f"coalesce(all_offers_91d, 0) < {p.maxOffersPerQuarter}")
    if p.maxWinBackAttempts is not None:
        parts.append(f"win_back_attempts < {p.maxWinBackAttempts}")
    if p.maxRecoveryEmailsPerWeek is not None:
        parts.append(f"coalesce(recovery_messages_7d, 0) < {p.maxRecoveryEmailsPerWeek}")
    return " AND ".join(parts)


def _cap_columns(p: FrequencyCapParams) -> list[str]:
    return (
        ([] if p.maxRefundsPerYear is None else ["program_offers_365d"])
        + ([] if p.maxOffersPerQuarter is None else ["all_offers_91d"])
        + ([] if p.maxWinBackAttempts is None else ["win_back_attempts"])
        + ([] if p.maxRecoveryEmailsPerWeek is None else ["recovery_messages_7d"])
    )


def _inventory_keep(p: InventoryParams, cols: set[str]) -> str:
    # An unknown stock state is not "in stock": a recovery message must not push an item the shop cannot ship.
    return "coalesce(all_items_in_stock, false)" if p.requireInStock else "true"


FILTER_RULES: dict[str, FilterRule] = {
    "trust": FilterRule(
        TrustParams,
        lambda p: ["account_status"],
        _trust_keep,
        _trust_reason,
    ),
    "issue-severity": FilterRule(
        IssueSeverityParams,
        lambda p: ["delay_days", "item_condition", "customer_complaints"],
        _severity_keep,
        lambda p, c: f"delay <= {p.minDelayDays} days and not damaged, or customer already complained",
    ),
    "customer-value": FilterRule(
        CustomerValueParams,
        lambda p: (
            ["lifetime_value_usd"]
            + (["order_frequency"] if p.minOrderFrequency is not None else [])
            + (["subscription_tier"] if p.minSubscriptionTier else [])
        ),
        _value_keep,
        lambda p, c: (
            f"lifetime value < ${p.minLifetimeValue:g}"
            + (f" or fewer than {p.minOrderFrequency:g} orders/year" if p.minOrderFrequency is not None else "")
            + (f" or tier below {p.minSubscriptionTier}" if p.minSubscriptionTier else "")
        ),
    ),
    "eligibility": FilterRule(
        EligibilityParams,
        _eligibility_columns,
        _eligibility_keep,
        _eligibility_reason,
    ),
    "churn-timing": FilterRule(
        ChurnTimingParams,
        lambda p: ["days_since_churn"],
        lambda p, c: f"days_since_churn BETWEEN {p.minDaysSinceChurn} AND {p.maxDaysSinceChurn}",
        lambda p, c: f"churned outside {p.minDaysSinceChurn}-{p.maxDaysSinceChurn} days ago",
    ),
    "churn-reason": FilterRule(
        ChurnReasonParams,
        lambda p: ["churn_reason"],
        lambda p, c: (
            f"churn_reason IN ({_q(p.addressableReasons)})"
            + (f" AND churn_reason NOT IN ({_q(p.excludeReasons)})" if p.excludeReasons else "")
        ),
        lambda p, c: "churn reason not addressable",
    ),
    "churn-signal": FilterRule(
        ChurnSignalParams,
        lambda p: ["engagement_change", "login_frequency", "historical_avg", "days_since_last_purchase"],
        _signal_keep,
        lambda p, c: f"fewer than {p.minSignalsRequired} churn signals",
    ),
    "frequency-cap": FilterRule(
        FrequencyCapParams,
        _cap_columns,
        _cap_keep,
        lambda p, c: "frequency cap reached",
    ),
    "cart-value": FilterRule(
        CartValueParams,
        lambda p: ["cart_value"],
        lambda p, c: f"cart_value >= {p.minCartValue}",
        lambda p, c: f"cart value < {p.minCartValue:g}",
    ),
    "inventory": FilterRule(
        InventoryParams,
        lambda p: ["all_items_in_stock"] if p.requireInStock else [],
        _inventory_keep,
        lambda p, c: "an item in the cart is out of stock",
    ),
}


def validate_filter_parameters(rule: str, parameters: dict[str, Any]) -> _Params:
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
    keep_sql: str
    reason: str
    columns: list[str]


def compile_chain(filters: Sequence[Any], available: set[str]) -> list[CompiledFilter]:
    """Compile config FilterSpecs (already in order) against the batch's columns; a missing column is an error."""
    compiled = []
    for spec in filters:
        rule = FILTER_RULES[spec.rule]
        params = validate_filter_parameters(spec.rule, spec.parameters)
        missing = [c for c in rule.columns(params) if c not in available]
        if missing:
            raise ValueError(f"filter {spec.filterId!r} needs column(s) {missing} that the source does not provide")
        compiled.append(
            CompiledFilter(
                spec.filterId, rule.keep(params, available), rule.reason(params, available), rule.columns(params)
            )
        )
    return compiled


def rejection_index_sql(chain: Sequence[CompiledFilter]) -> str:
    """`CASE WHEN NOT coalesce(keep_1, false) THEN 0 ... END`: the position in `chain` of the first filter a row
    fails, or NULL (a small integer per row; the caller maps it to the filter's id and reason)."""
    if not chain:
        return "CAST(NULL AS INTEGER)"
    whens = " ".join(f"WHEN NOT coalesce(({f.keep_sql}), false) THEN {i}" for i, f in enumerate(chain))
    return f"CAST(CASE {whens} END AS INTEGER)"
