"""A reactive program: events (`eventSources`) start the chain, one candidate per event, hourly partitions.

The abandoned-cart spec's config validates as written.  The platform does not build reactive programs yet
(`engage_assets.definitions` refuses them with a clear error): this module fixes the config's shape so the
event-driven path has a checked contract to land on.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from engage_assets.domain.config.common import Budget, ConfigModel, ScoringModelBase, check_unique_model_ids
from engage_assets.domain.config.program import ProgramBase

# EventBridge content filters (a mapping with one of these keys, inside a value list).
CONTENT_FILTERS = frozenset(
    {"prefix", "suffix", "anything-but", "numeric", "exists", "cidr", "equals-ignore-case", "wildcard"}
)
NUMERIC_OPERATORS = frozenset({"<", "<=", "=", ">", ">="})
DEDUP_PLACEHOLDERS = frozenset({"customerId", "cartId", "programId", "subjectId"})
HOURLY_CRON = "0 * * * *"
# Hourly partitions from a fixed day, so the partition set never moves; a program may set its own start.
DEFAULT_PARTITIONS_START = date(2026, 1, 1)


def _check_content_filter(f: dict[Any, Any], where: str) -> None:
    if len(f) != 1 or next(iter(f)) not in CONTENT_FILTERS:
        raise ValueError(
            f"{where}: a mapping inside a value list is a content filter with one of "
            f"{', '.join(sorted(CONTENT_FILTERS))}; got {sorted(map(str, f))}"
        )
    name, arg = next(iter(f.items()))
    if name == "exists" and not isinstance(arg, bool):
        raise ValueError(f"{where}: exists takes true or false")
    if name == "numeric":
        pairs = arg if isinstance(arg, list) and arg and len(arg) % 2 == 0 else None
        if pairs is None or any(
            op not in NUMERIC_OPERATORS or isinstance(n, bool) or not isinstance(n, int | float)
            for op, n in zip(pairs[::2], pairs[1::2], strict=True)
        ):
            raise ValueError(f"{where}: numeric takes operator/number pairs, e.g. ['>=', 50]")


def check_event_pattern(pattern: Any, where: str = "") -> None:
    """Check an EventBridge event pattern's structure: a non-empty mapping whose leaves are non-empty lists of
    values or content filters, whose inner nodes are mappings (and `$or` a list of mappings).  `where` is the path
    inside the pattern the errors name (empty at the top)."""
    if not isinstance(pattern, dict) or not pattern:
        raise ValueError(f"{where or 'the pattern'}: must be a non-empty mapping")
    for key, value in pattern.items():
        at = f"{where}.{key}" if where else str(key)
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise ValueError(f"{at}: takes a list of at least two patterns")
            for i, alternative in enumerate(value):
                check_event_pattern(alternative, f"{at}.{i}")
        elif isinstance(value, dict):
            check_event_pattern(value, at)
        elif isinstance(value, list):
            if not value:
                raise ValueError(f"{at}: an empty list matches no event")
            for item in value:
                if isinstance(item, dict):
                    _check_content_filter(item, at)
                elif item is not None and not isinstance(item, str | int | float | bool):
                    raise ValueError(f"{at}: list items are values or content filters, got {type(item).__name__}")
        else:
            raise ValueError(f"{at}: must be a list of values (write [{value!r}]) or a nested mapping")


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
