"""Config parts every program kind shares: the base model, errors, scoring models, filters, offer segments,
holdout and budget."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engage_assets.domain.filters import FILTER_RULES, validate_filter_parameters


class ConfigError(ValueError):
    """A program config is invalid; the message names the file, the field path and the reason."""


class ConfigModel(BaseModel):
    """Base of every config model: unknown fields are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


ColumnType = Literal["string", "integer", "number", "boolean", "date", "timestamp"]
Marketplace = Literal["US", "UK", "DE", "FR", "JP", "IN", "BR", "AU"]


class ScoringModelBase(ConfigModel):
    """A model the program scores with.  The reactive spec names only the endpoint and features; the platform
    trains a model when the config also names its labelled history (`trainingTable`, `label`)."""

    modelId: str = Field(description="The model's name: its score column, registry entry and version metadata.")
    endpoint: str = Field(
        description="`sagemaker://<endpoint-name>`: the production endpoint; locally the trained model in process."
    )
    features: list[str] = Field(
        min_length=1, description="Batch columns the model reads (a NULL one is imputed and counted, never rejected)."
    )
    trainingTable: str | None = Field(
        default=None, description="Mart with labelled history for this model (the platform trains when set)."
    )
    label: str | None = Field(default=None, description="The training table's 0/1 outcome column the model predicts.")
    truthColumn: str | None = Field(
        default=None,
        description="Optional: a column with the outcome's true probability (generated data only), for evaluation "
        "metrics; never needed to train (a training table without it trains all the same).",
    )
    retrainSchedule: str | None = Field(
        default=None,
        description="engage: when the model is retrained, a 5-field cron in UTC (e.g. `0 3 * * 0`, Sunday 03:00; "
        "`0 3 * * 1#1`, the first Monday of the month); default the first Monday of the month at 03:00 (a batch "
        "program) or Sunday 03:00 (a reactive one).  Each retraining evaluates the candidate on held-out rows and "
        "promotes it only if it beats a naive one-feature baseline and the current version.",
    )

    @field_validator("retrainSchedule")
    @classmethod
    def _retrain_schedule(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5:
            raise ValueError("retrainSchedule must be a 5-field cron (minute hour day-of-month month day-of-week), UTC")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.startswith("sagemaker://") or len(v) <= len("sagemaker://"):
            raise ValueError("endpoint must look like sagemaker://<endpoint-name>")
        return v


class ScoringModel(ScoringModelBase):
    """A batch program's model: the platform trains it on `trainingTable`'s `label`, so both are required."""

    trainingTable: str = Field(description="Mart with labelled history for this model (the platform trains on it).")
    label: str = Field(description="The training table's 0/1 outcome column the model predicts.")


def check_unique_model_ids(models: Iterable[ScoringModelBase]) -> list[str]:
    """The models' ids, in order; ValueError when one repeats (scores are keyed by modelId)."""
    ids = [m.modelId for m in models]
    if len(set(ids)) != len(ids):
        raise ValueError(f"scoringModels modelIds must be unique, got {ids}")
    return ids


class FilterSpec(ConfigModel):
    """One step of the filter chain; a business rule is named by its `filterId` (see `domain.filters`), or by
    `rule` when the filter has an id of its own (several `expression` filters in one chain)."""

    filterId: str = Field(
        description="The filter's name in counts and rejection reasons; for a business rule without `rule`, the "
        "rule it runs (issue-severity, customer-value, churn-timing, churn-reason, churn-signal, frequency-cap, "
        "cart-value, inventory, expression)."
    )
    type: Literal["trust", "business-rule", "eligibility"] = Field(
        description="trust (customer exists, account in good standing), business-rule (a rule named by filterId or "
        "rule), eligibility (no recent offer from this program, not opted out, refundable where the batch says)."
    )
    order: int = Field(ge=1, description="Position in the chain (unique): filters run in ascending order.")
    rule_: str | None = Field(
        default=None,
        alias="rule",
        description="engage: the business rule this filter runs when its filterId is a name of its own, e.g. "
        "`rule: expression` with `filterId: small-orders`.",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="The rule's parameters (see the filter rules below); unknown keys and wrong types are errors.",
    )

    @model_validator(mode="after")
    def _known(self) -> FilterSpec:
        if self.rule_ is not None and self.type != "business-rule":
            raise ValueError(f"rule is for business-rule filters; a {self.type} filter runs the {self.type} rule")
        if self.rule not in FILTER_RULES or (self.rule_ is not None and self.rule in ("trust", "eligibility")):
            known = sorted(k for k in FILTER_RULES if k not in ("trust", "eligibility"))
            name = self.rule_ if self.rule_ is not None else self.filterId
            raise ValueError(f"unknown business-rule filter {name!r}; known: {', '.join(known)}")
        validate_filter_parameters(self.rule, self.parameters)
        return self

    @property
    def rule(self) -> str:
        """The rule that runs: `rule` when set, else the filter's id for a business rule, else its type."""
        if self.rule_ is not None:
            return self.rule_
        return self.filterId if self.type == "business-rule" else self.type


class Segment(ConfigModel):
    """One offer segment: a score range and what the segment is offered.

    `impactLevel` / `riskLevel` name the segment (refunds / churn); win-back segments are named by offerType.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    scoreRange: tuple[float, float] = Field(
        description="[low, high): the segment score's range (the top segment's high of 1.0 includes 1.0); the "
        "segments must tile [0, 1] without gaps or overlaps."
    )
    impactLevel: str | None = Field(default=None, description="The segment's name in refund programs (high, …).")
    riskLevel: str | None = Field(default=None, description="The segment's name in churn programs (critical, …).")
    offerType: str | None = Field(default=None, description="What the segment is offered (premium, standard, …).")
    refundType: str | None = Field(
        default=None, description="Refunds: full (the order value), partial (refundAmount) or credit (creditAmount)."
    )
    discount: float | None = Field(default=None, ge=0, le=100, description="Discount in percent.")
    duration: int | None = Field(default=None, ge=1, description="Months the discount lasts (cost: × this).")
    refundAmount: float | None = Field(default=None, ge=0, description="Partial refund amount, USD.")
    creditAmount: float | None = Field(default=None, ge=0, description="Account credit amount, USD.")
    additionalCredit: float | None = Field(default=None, ge=0, description="Credit on top of the refund, USD.")
    requireApproval: bool = Field(
        default=False, description="Refunds: the segment's offers wait for approval instead of being issued."
    )

    @field_validator("scoreRange")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0.0 <= lo < hi <= 1.0):
            raise ValueError(f"scoreRange must satisfy 0 <= low < high <= 1, got [{lo}, {hi}]")
        return v

    @property
    def name(self) -> str:
        """The segment's name: its impact or risk level, else its offer type, else its score range."""
        return self.impactLevel or self.riskLevel or self.offerType or f"{self.scoreRange[0]}-{self.scoreRange[1]}"

    @property
    def offer_type(self) -> str:
        """What the segment is offered: the refund type, else the offer type, else the segment's name."""
        return self.refundType or self.offerType or self.name


class OfferStrategy(ConfigModel):
    """`refundStrategy` / `offerStrategy`: contiguous score segments, each with its offer."""

    enabled: bool = Field(default=True, description="The spec's switch; the segments below apply either way.")
    autoProcess: bool | None = Field(
        default=None, description="Refunds: false makes every offer wait for approval (as requireApproval does)."
    )
    segmentedOffers: bool = Field(default=True, description="The spec's flag: offers by segment (the only mode).")
    segmentScore: str | None = Field(
        default=None, description="modelId whose score picks the segment (default: the first scoring model)."
    )
    segments: list[Segment] = Field(min_length=1, description="Contiguous score segments, each with its offer.")

    @model_validator(mode="after")
    def _contiguous(self) -> OfferStrategy:
        ordered = sorted(self.segments, key=lambda s: s.scoreRange[0])
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.scoreRange[0] < a.scoreRange[1]:
                raise ValueError(
                    f"segments {a.name!r} {list(a.scoreRange)} and {b.name!r} {list(b.scoreRange)} overlap"
                )
            if b.scoreRange[0] > a.scoreRange[1]:
                raise ValueError(
                    f"gap between segments {a.name!r} and {b.name!r}: scores in "
                    f"[{a.scoreRange[1]}, {b.scoreRange[0]}) would get no offer"
                )
        names = [s.name for s in self.segments]
        if len(set(names)) != len(names):
            raise ValueError(f"segment names must be unique, got {names}")
        return self


class Holdout(ConfigModel):
    """The control group: a deterministic share of candidates stored and measured, never contacted."""

    percent: float = Field(
        default=10.0, ge=0, lt=100, description="Share of candidates held out: stored and measured, never contacted."
    )
    salt: str = Field(
        default="engage-holdout-v1",
        description="Mixed into the hash that picks the holdout; change it to draw a new control group.",
    )


class Budget(ConfigModel):
    """The most money one partition's offers may cost."""

    amount: float = Field(
        gt=0,
        description="Most money the offers of one partition may cost: the best-scored offers that fit are made, the "
        "rest dropped with reason budget (holdout offers cost nothing).",
    )
    currency: Literal["USD"] = Field(default="USD", description="Budgets are in USD.")


# The spec names the win-back program "win-back-campaigns"; its Dagster group is the shorter `win_back`.
GROUP_NAMES = {"win-back-campaigns": "win_back"}
