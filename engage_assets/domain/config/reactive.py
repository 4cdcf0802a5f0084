"""A reactive program: events (`eventSources`) start the chain, one candidate per event, hourly partitions.

The abandoned-cart spec's config validates as written.  The platform does not build reactive programs yet
(`engage_assets.definitions` refuses them with a clear error): this module fixes the config's shape so the
event-driven path has a checked contract to land on.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cached_property
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from engage_assets.domain.config.common import Budget, ConfigModel, ScoringModelBase, check_unique_model_ids
from engage_assets.domain.config.program import ProgramBase
from engage_assets.domain.events.patterns import EventPattern, compile_pattern, normalize_pattern

DEDUP_PLACEHOLDERS = frozenset({"customerId", "cartId", "programId", "subjectId"})
HOURLY_CRON = "0 * * * *"
# Hourly partitions from a fixed day, so the partition set never moves; a program may set its own start.
DEFAULT_PARTITIONS_START = date(2026, 1, 1)


def check_event_pattern(pattern: Any) -> None:
    """Check an EventBridge event pattern as Engage deploys it (normalized, see
    `engage_assets.domain.events.patterns`): `PatternError` (a ValueError) names the path of the bad part."""
    compile_pattern(normalize_pattern(pattern))


class EventSourceConfig(ConfigModel):
    """Where the events come from and which of them the program takes."""

    eventBusName: str | None = None
    queueUrl: str | None = Field(default=None, description="The SQS queue an sqs source reads")
    eventPattern: dict[str, Any]

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

    sourceId: str
    type: Literal["eventbridge", "sqs", "local"]
    config: EventSourceConfig

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

    enabled: bool = True
    defaultDiscount: float = Field(ge=0, le=100)
    dynamicDiscounting: bool = False
    maxDiscount: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _within_max(self) -> DiscountStrategy:
        if self.defaultDiscount > self.maxDiscount:
            raise ValueError(f"defaultDiscount {self.defaultDiscount:g} exceeds maxDiscount {self.maxDiscount:g}")
        return self


class EventDeduplication(ConfigModel):
    """One candidate per key within `ttlDays`: a repeated event (a cart abandoned twice) is not a second one."""

    enabled: bool = True
    ttlDays: int = Field(default=7, ge=1, le=365)
    keyFormat: str = "{customerId}:{subjectId}:{programId}"

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

    eventSources: list[EventSource] = Field(min_length=1)
    scoringModels: list[ScoringModelBase] = Field(min_length=1)
    discountStrategy: DiscountStrategy | None = None
    deduplication: EventDeduplication = EventDeduplication()
    budget: Budget | None = None
    partitionsStart: date = DEFAULT_PARTITIONS_START

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
