"""The filter rules' parameters, as the program configs write them, with the comparison each threshold uses.

A threshold's name follows the spec's YAML (`minLifetimeValue: 200`), while the spec's prose sometimes says "more
than" ("lifetime value: >$200"): each field's description says which comparison the platform applies, and it is
the same on every path (batch programs and the event path compile the same SQL, `engage_assets.domain.filters`).
In short: a `min…` value is inclusive (≥) except `minDelayDays`, which is strict (the spec's "delay > 2 days" and
its query's `delay_days > 2`); a `max…Per…` cap keeps customers *below* it, so the offer being made is at most the
cap-th; a look-back of N days covers offers 1 to N days before the run's as-of date (`as_of_date − offer_date`, the
day after a daily partition's day), so N days means N days (90 is 90, 365 is 365).

A value the rule needs and the row lacks (NULL) never passes a threshold: the row is rejected by that filter with a
reason saying the value is unknown.  A value the rule does not need for that row (the delay of a damaged order)
rejects nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engage_assets.domain.filter_expression import ALLOWED_FUNCTIONS, FilterExpression, parse_expression

TIER_RANK = {"basic": 0, "standard": 1, "premium": 2, "premium_plus": 3}


class FilterParams(BaseModel):
    """Base of every rule's parameters: unknown keys and wrong types are config errors at load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TrustParams(FilterParams):
    """`trust`: the customer exists (checked at the source: an unknown customer is rejected there, saying so) and
    the account is in good standing; on a cart event also a payment method on file."""

    allowedAccountStatuses: list[str] = Field(
        default_factory=lambda: ["active"],
        min_length=1,
        description="Keeps `account_status IN (…)`; a NULL status is rejected as unknown.",
    )


class IssueSeverityParams(FilterParams):
    """`issue-severity` (proactive refunds): the order was delayed, or damaged, and not complained about yet."""

    minDelayDays: int = Field(
        ge=0,
        description="Strict: keeps `delay_days > minDelayDays` (the spec's 'delay > 2 days'; 2 days late does not "
        "qualify, 3 does). A NULL (unparseable) delay rejects only an order that is not damaged.",
    )
    includeDamaged: bool = Field(
        default=True, description="An order with `item_condition = 'damaged'` qualifies whatever its delay."
    )
    excludeExistingComplaints: bool = Field(
        default=True,
        description="Keeps `customer_complaints = 0` (the spec's 'no complaints yet'); NULL is rejected as unknown.",
    )


class CustomerValueParams(FilterParams):
    """`customer-value`: the customer is worth the offer."""

    minLifetimeValue: float = Field(
        default=0,
        ge=0,
        description="Inclusive: keeps `lifetime_value_usd >= minLifetimeValue` (the spec's '> $200' with "
        "`minLifetimeValue: 200` keeps exactly $200). NULL is rejected as unknown.",
    )
    minOrderFrequency: float | None = Field(
        default=None,
        ge=0,
        description="Inclusive: keeps `order_frequency >= minOrderFrequency` (orders in the last 365 days; the "
        "spec's '> 2/year' with `minOrderFrequency: 2` keeps exactly 2). NULL is rejected as unknown.",
    )
    minSubscriptionTier: str | None = Field(
        default=None,
        description=f"Inclusive: keeps this tier and the ones above it, in the order {list(TIER_RANK)} ('Premium+' "
        "is `premium`). NULL is rejected as unknown.",
    )

    def model_post_init(self, _: Any) -> None:
        if self.minSubscriptionTier is not None and self.minSubscriptionTier not in TIER_RANK:
            raise ValueError(f"minSubscriptionTier must be one of {list(TIER_RANK)}")


class EligibilityParams(FilterParams):
    """`eligibility`: no recent offer from this program, not opted out, and (where the batch has the column) the
    order refundable; each failing check is its own reason."""

    lookbackDays: int = Field(
        default=90,
        ge=1,
        description="Keeps customers whose last offer from this program is more than lookbackDays before the as-of "
        "date (`days_since_program_offer > lookbackDays`): with 90, an offer 90 days back excludes, 91 does not.",
    )
    excludeOptedOut: bool = Field(
        default=True,
        description="Drops `marketing_opt_out = true`. NULL counts as not opted out: each channel's own consent "
        "(`email_opt_in`, …) is checked again at send time.",
    )
    requireRefundable: bool | None = Field(
        default=None,
        description="Keeps `refundable = true` (NULL is rejected as unknown). Unset: required when the source "
        "has a `refundable` column.",
    )


class ChurnTimingParams(FilterParams):
    """`churn-timing` (win-back): churned neither too recently nor too long ago."""

    minDaysSinceChurn: int = Field(ge=0, description="Inclusive: keeps `days_since_churn >= minDaysSinceChurn`.")
    maxDaysSinceChurn: int = Field(ge=0, description="Inclusive: keeps `days_since_churn <= maxDaysSinceChurn`.")

    def model_post_init(self, _: Any) -> None:
        if self.maxDaysSinceChurn < self.minDaysSinceChurn:
            raise ValueError("maxDaysSinceChurn must be >= minDaysSinceChurn")


class ChurnReasonParams(FilterParams):
    """`churn-reason` (win-back): the reason the customer left is one the offer can address."""

    addressableReasons: list[str] = Field(min_length=1, description="Keeps `churn_reason IN (…)`.")
    excludeReasons: list[str] = Field(default_factory=list, description="Drops `churn_reason IN (…)`.")


class ChurnSignalParams(FilterParams):
    """`churn-signal` (churn prevention): at least `minSignalsRequired` of three signals.  A signal whose inputs
    are NULL is unknown: the row passes when its known signals suffice, and is rejected as unknown when only the
    unknown ones could make up the count."""

    minEngagementDecline: float = Field(
        gt=0, le=1, description="Signal when `engagement_change <= -minEngagementDecline` (0.3: a decline of 30%+)."
    )
    maxLoginFrequencyRatio: float = Field(
        gt=0, le=1, description="Signal when `login_frequency < maxLoginFrequencyRatio × historical_avg` (strict)."
    )
    minDaysSinceLastPurchase: int = Field(
        ge=0, description="Signal when `days_since_last_purchase >= minDaysSinceLastPurchase` (inclusive)."
    )
    minSignalsRequired: int = Field(ge=1, le=3, description="Keeps rows with at least this many signals.")


class FrequencyCapParams(FilterParams):
    """`frequency-cap`: every cap keeps customers strictly *below* it, so the offer being made is at most the N-th."""

    maxRefundsPerYear: int | None = Field(
        default=None,
        ge=1,
        description="Keeps `program_offers_365d < maxRefundsPerYear`: offers from this program 1 to 365 days "
        "before the as-of date (365 days back counts, 366 does not).",
    )
    maxOffersPerQuarter: int | None = Field(
        default=None,
        ge=1,
        description="Keeps `all_offers_91d < maxOffersPerQuarter`: offers from any program 1 to 91 days back.",
    )
    maxWinBackAttempts: int | None = Field(
        default=None, ge=1, description="Keeps `win_back_attempts < maxWinBackAttempts` (NULL: unknown, rejected)."
    )
    maxRecoveryEmailsPerWeek: int | None = Field(
        default=None,
        ge=1,
        description="Keeps `recovery_messages_7d < maxRecoveryEmailsPerWeek` (this program's, last 7 days).",
    )

    def model_post_init(self, _: Any) -> None:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(f"frequency-cap needs at least one of {', '.join(type(self).model_fields)}")


class CartValueParams(FilterParams):
    """`cart-value` (abandoned cart)."""

    minCartValue: float = Field(ge=0, description="Inclusive: keeps `cart_value >= minCartValue`.")


class InventoryParams(FilterParams):
    """`inventory` (abandoned cart)."""

    requireInStock: bool = Field(
        default=True, description="Keeps `all_items_in_stock = true`; an unknown stock state is not in stock."
    )


class ExpressionParams(FilterParams):
    """`expression`: a rule without Python — a SQL condition over the batch's columns (`domain.filter_expression`),
    checked when the config loads (syntax, one boolean expression, known columns, allowed functions)."""

    expression: str = Field(
        description="A SQL condition (DuckDB) over the batch's columns, e.g. `order_value_usd >= 25 AND marketplace "
        "<> 'JP'`: TRUE keeps the row, FALSE rejects it with `reason`, NULL (a value it reads is missing) with "
        "`unknownReason`. Comparisons, AND/OR/NOT, IN, BETWEEN, LIKE, IS NULL, arithmetic, CASE and the functions "
        f"{', '.join(sorted(ALLOWED_FUNCTIONS))}; no statement, subquery, `;` or clock."
    )
    reason: str = Field(min_length=1, description="The rejection reason of a row for which the condition is FALSE.")
    unknownReason: str | None = Field(
        default=None,
        min_length=1,
        description="The rejection reason of a row for which the condition is NULL (default: the reason, then "
        "'unknown: NULL in' and the columns it reads).",
    )

    @field_validator("expression")
    @classmethod
    def _parses(cls, v: str) -> str:
        parse_expression(v)  # ExpressionError (a ValueError) says what is wrong
        return v

    @property
    def parsed(self) -> FilterExpression:
        """The checked condition: the SQL that runs and the columns it reads."""
        return parse_expression(self.expression)

    @property
    def unknown_reason(self) -> str:
        """Why a row for which the condition is NULL is rejected."""
        return self.unknownReason or f"{self.reason} (unknown: NULL in {' or '.join(self.parsed.columns)})"
