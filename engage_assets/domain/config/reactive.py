"""A reactive program: events (`eventSources`) start the chain, one candidate per event, hourly partitions.

The abandoned-cart spec's config validates as written.  The decision path (`engage_assets.reactive`) runs it; the
Dagster definitions build it with `engage_assets.assets.reactive` (hourly decision stages, fed by the cart-event
sensor).

The offer is a discount (`discountStrategy`).  Its rule, as offer segments over the purchase-intent score (`strategy`,
so the planner and the templates read a reactive offer as they read a batch one):
- a cart whose shopper will likely buy anyway (intent >= 0.5) gets `defaultDiscount`;
- with `dynamicDiscounting`, lower intent gets more, in steps of 5 points from the default up to `maxDiscount`
  (never above it), the intent range [0, 0.5) cut into equal bands: default 10, max 20 gives 15 % for
  [0.25, 0.5) and 20 % for [0, 0.25);
- without it (or with the strategy disabled or absent) every cart gets the default (or no discount).
"""

from __future__ import annotations

import re
from datetime import date
from functools import cached_property
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from engage_assets.domain.config.common import (
    Budget,
    ConfigModel,
    OfferStrategy,
    ScoringModelBase,
    Segment,
    check_unique_model_ids,
)
from engage_assets.domain.config.program import ProgramBase
from engage_assets.domain.events.patterns import EventPattern, compile_pattern, normalize_pattern
from engage_assets.domain.source_columns import EVENT_BATCH_COLUMN_TYPES

DEDUP_PLACEHOLDERS = frozenset({"customerId", "cartId", "programId", "subjectId"})
HOURLY_CRON = "0 * * * *"
# Hourly partitions from a fixed day, so the partition set never moves; a program may set its own start.
DEFAULT_PARTITIONS_START = date(2026, 1, 1)
# The discount rule (module docstring): intent at or above this gets the default; discounts grow in these steps.
HIGH_INTENT = 0.5
DISCOUNT_STEP = 5.0


def check_event_pattern(pattern: Any) -> None:
    """Check an EventBridge event pattern as Engage deploys it (normalized, see
    `engage_assets.domain.events.patterns`): `PatternError` (a ValueError) names the path of the bad part."""
    compile_pattern(normalize_pattern(pattern))


class EventSourceConfig(ConfigModel):
    """Where the events come from and which of them the program takes."""

    eventBusName: str | None = Field(default=None, description="An eventbridge source's bus (required there).")
    queueUrl: str | None = Field(default=None, description="The SQS queue an sqs source reads (required there).")
    eventPattern: dict[str, Any] = Field(
        description="EventBridge event pattern: which events the program takes (the spec's `[lo, hi]` under "
        "`detail` read as a numeric range); checked at load."
    )

    @field_validator("eventPattern")
    @classmethod
    def _pattern(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_event_pattern(v)
        return v

    @cached_property
    def matcher(self) -> EventPattern:
        """The normalized pattern, compiled once: `matcher.matches(event)` answers as the deployed rule does."""
        return compile_pattern(normalize_pattern(self.eventPattern))

    @property
    def normalized_pattern(self) -> dict[str, Any]:
        """The pattern deployed to EventBridge and matched locally: `eventPattern` with the spec's `[lo, hi]`
        ranges under `detail` read as numeric ranges (`eventPattern` itself stays as written)."""
        return self.matcher.pattern


class EventSource(ConfigModel):
    """One event source: EventBridge (through its SQS queue), SQS directly, or the local durable queue."""

    sourceId: str = Field(description="The source's name (unique in the program).")
    type: Literal["eventbridge", "sqs", "local"] = Field(
        description="eventbridge (its bus → SQS), sqs (a queue directly), local (the embedded durable queue)."
    )
    config: EventSourceConfig = Field(description="Bus or queue, and the event pattern.")

    @model_validator(mode="after")
    def _addressable(self) -> EventSource:
        if self.type == "eventbridge" and not self.config.eventBusName:
            raise ValueError("an eventbridge source needs config.eventBusName")
        if self.type == "sqs" and not self.config.queueUrl:
            raise ValueError("an sqs source needs config.queueUrl")
        return self

    @property
    def pattern(self) -> dict[str, Any]:
        """The source's normalized event pattern (`config.normalized_pattern`)."""
        return self.config.normalized_pattern


class DiscountStrategy(ConfigModel):
    """The reactive program's offer: a discount percent, personalised up to `maxDiscount` when dynamic."""

    enabled: bool = Field(default=True, description="false: no discount, a plain reminder.")
    defaultDiscount: float = Field(
        ge=0, le=100, description="Percent off for a shopper likely to buy anyway (purchase intent >= 0.5)."
    )
    dynamicDiscounting: bool = Field(
        default=False, description="Lower intent gets more: steps of 5 points from the default up to maxDiscount."
    )
    maxDiscount: float = Field(ge=0, le=100, description="Inclusive: no cart ever gets more than this percent.")

    @model_validator(mode="after")
    def _within_max(self) -> DiscountStrategy:
        if self.defaultDiscount > self.maxDiscount:
            raise ValueError(f"defaultDiscount {self.defaultDiscount:g} exceeds maxDiscount {self.maxDiscount:g}")
        return self

    def levels(self) -> list[float]:
        """The discounts the rule gives, lowest first: the default, then steps of 5 points up to `maxDiscount`."""
        if not self.dynamicDiscounting:
            return [self.defaultDiscount]
        out = [self.defaultDiscount]
        while out[-1] < self.maxDiscount:
            out.append(min(out[-1] + DISCOUNT_STEP, self.maxDiscount))
        return out

    def segments(self) -> list[Segment]:
        """The rule as offer segments over the purchase-intent score (module docstring), highest intent first."""
        if not self.enabled:
            return [discount_segment(0.0, 1.0, None)]
        levels = self.levels()
        extra = len(levels) - 1
        if extra == 0:
            return [discount_segment(0.0, 1.0, levels[0])]
        bands = [discount_segment(HIGH_INTENT, 1.0, levels[0])]
        for i, level in enumerate(levels[1:], start=1):
            bands.append(
                discount_segment(HIGH_INTENT * (extra - i) / extra, HIGH_INTENT * (extra - i + 1) / extra, level)
            )
        return bands


def discount_segment(low: float, high: float, percent: float | None) -> Segment:
    """An offer segment of the discount rule: intents in [low, high) get `percent` % off (None: a plain reminder)."""
    offer_type = "reminder" if percent is None else f"discount_{percent:g}pct"
    return Segment(scoreRange=(low, high), offerType=offer_type, discount=percent)


class EventDeduplication(ConfigModel):
    """One candidate per key within `ttlDays`: a repeated event (a cart abandoned twice) is not a second one."""

    enabled: bool = Field(default=True, description="false: every event is a candidate.")
    ttlDays: int = Field(default=7, ge=1, le=365, description="Days a key stays claimed.")
    keyFormat: str = Field(
        default="{customerId}:{subjectId}:{programId}",
        description="The key: text with {customerId}, {cartId}, {subjectId}, {programId} placeholders.",
    )

    @field_validator("keyFormat")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        names = re.findall(r"\{(\w*)\}", v)
        bare = re.sub(r"\{\w*\}", "", v)
        if "{" in bare or "}" in bare or not names:
            raise ValueError("keyFormat is text with {placeholder} fields, e.g. {customerId}:{cartId}:{programId}")
        unknown = sorted(set(names) - DEDUP_PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"keyFormat placeholders {unknown} unknown; known: {', '.join(sorted(DEDUP_PLACEHOLDERS))}"
            )
        return v


class ReactiveProgram(ProgramBase):
    """An event-driven program (abandoned cart): events → the same filter/score/offer chain, hourly partitions."""

    kind: ClassVar[str] = "reactive"

    eventSources: list[EventSource] = Field(min_length=1, description="Where the events come from.")
    scoringModels: list[ScoringModelBase] = Field(min_length=1, description="Models that score each eligible cart.")
    discountStrategy: DiscountStrategy | None = Field(
        default=None, description="The offer: a discount by purchase intent (absent: a plain reminder)."
    )
    deduplication: EventDeduplication = Field(
        default=EventDeduplication(), description="One candidate per key within ttlDays."
    )
    budget: Budget | None = Field(
        default=None, description="Accepted for symmetry with batch programs; the event path applies no budget today."
    )
    partitionsStart: date = Field(default=DEFAULT_PARTITIONS_START, description="engage: the first hourly partition.")

    @model_validator(mode="after")
    def _consistent(self) -> ReactiveProgram:
        check_unique_model_ids(self.scoringModels)
        ids = [s.sourceId for s in self.eventSources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"eventSources sourceIds must be unique, got {ids}")
        return self

    @property
    def cron(self) -> str:
        """The partition cadence: hourly (events are processed as they arrive; this is not a schedule)."""
        return HOURLY_CRON

    @property
    def subject_column(self) -> str:
        """A reactive candidate's subject: the cart."""
        return "cart_id"

    def batch_column_types(self) -> dict[str, str]:
        """An abandoned cart's event fields and the context the event path joins on."""
        return dict(EVENT_BATCH_COLUMN_TYPES)

    @cached_property
    def strategy(self) -> OfferStrategy:
        """The discount rule as offer segments (module docstring); a plain reminder without a discount strategy."""
        segments = (
            self.discountStrategy or DiscountStrategy(enabled=False, defaultDiscount=0, maxDiscount=0)
        ).segments()
        return OfferStrategy(segments=segments)
