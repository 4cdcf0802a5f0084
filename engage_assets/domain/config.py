"""Program configuration: the spec's "Program Configuration" blocks as validated pydantic models.

A bad config fails loading with the file, the field path and the reason, so `dagster definitions validate`
and the test suite catch it, never a 2 AM run.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import dagster as dg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engage_assets.domain.filters import FILTER_RULES, validate_filter_parameters


class ConfigError(ValueError):
    """A program config is invalid; the message names the file, the field path and the reason."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


ColumnType = Literal["string", "integer", "number", "boolean", "date", "timestamp"]


class ConnectorConfig(_Model):
    account: str | None = None
    database: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    table: str = Field(description="The mart the query reads; the Dagster asset it depends on.")
    query: str = Field(description="SQL with :partition_start, :partition_end, :as_of_date bind parameters.")

    @field_validator("query")
    @classmethod
    def _no_current_date(cls, query: str) -> str:
        if re.search(r"\bCURRENT_DATE\b|\bnow\(\)|\bYESTERDAY\b", query, re.IGNORECASE):
            raise ValueError(
                "use the bind parameters :partition_start / :partition_end / :as_of_date instead of the clock, "
                "so a backfill reproduces its day"
            )
        return query


class DataConnector(_Model):
    connectorId: str
    type: Literal["athena", "snowflake", "duckdb"]
    config: ConnectorConfig
    subjectColumn: str = "customer_id"
    requiredColumns: dict[str, ColumnType] = Field(
        description="Columns the query must return, with their type: drift fails the run before anything is stored."
    )

    @model_validator(mode="after")
    def _keys_required(self) -> DataConnector:
        for col in ("customer_id", self.subjectColumn):
            if col not in self.requiredColumns:
                raise ValueError(f"requiredColumns must include {col!r}")
        return self


class ScoringModel(_Model):
    modelId: str
    endpoint: str
    features: list[str] = Field(min_length=1)
    trainingTable: str = Field(description="Mart with labelled history for this model")
    label: str
    truthColumn: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.startswith("sagemaker://") or len(v) <= len("sagemaker://"):
            raise ValueError("endpoint must look like sagemaker://<endpoint-name>")
        return v


class FilterSpec(_Model):
    filterId: str
    type: Literal["trust", "business-rule", "eligibility"]
    order: int = Field(ge=1)
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> FilterSpec:
        rule_name = self.filterId if self.type == "business-rule" else self.type
        if rule_name not in FILTER_RULES:
            known = sorted(k for k in FILTER_RULES if k not in ("trust", "eligibility"))
            raise ValueError(f"unknown business-rule filter {self.filterId!r}; known: {', '.join(known)}")
        validate_filter_parameters(rule_name, self.parameters)
        return self

    @property
    def rule(self) -> str:
        return self.filterId if self.type == "business-rule" else self.type


class ChannelConfig(_Model):
    model_config = ConfigDict(extra="allow", frozen=True)
    templateId: str | None = None
    sendTime: str | None = None
    timezone: str | None = None
    delayDays: int | None = Field(default=None, ge=0)
    scheduleWithin: str | None = None
    displayDuration: int | None = Field(default=None, ge=1)
    message: str | None = None
    # Delays from the channel's base time (the cart event for the abandoned-cart program).
    delayMinutes: int | None = Field(default=None, ge=0)
    delayHours: int | None = Field(default=None, ge=0)
    # Texts the spec writes into the config ({field} placeholders): e-mail subject, push title and body.
    subject: str | None = None
    title: str | None = None
    body: str | None = None
    scriptId: str | None = None
    messageType: str | None = None
    callType: str | None = None
    # Conditions: static ones decide at planning whether the touch exists, dynamic ones are re-checked at send time.
    highImpactOnly: bool | None = None
    criticalRiskOnly: bool | None = None
    highScoreOnly: bool | None = None
    onlyIfNotConverted: bool | None = None
    onlyIfCartAbandoned: bool | None = None

    @field_validator("sendTime")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("sendTime must be HH:MM (24 h)")
        return v

    @field_validator("scheduleWithin")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+[hd]", v):
            raise ValueError("scheduleWithin must look like 24h or 2d")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None and v != "local":
            try:
                ZoneInfo(v)
            except (KeyError, ValueError):
                raise ValueError(f"timezone must be 'local' or an IANA zone, got {v!r}") from None
        return v

    @field_validator("message", "subject", "title", "body")
    @classmethod
    def _placeholders(cls, v: str | None) -> str | None:
        # Only {word} placeholders: a stray brace or a {{ … }} would reach a customer verbatim.
        if v is not None:
            bare = re.sub(r"\{\w+\}", "", v)
            if "{" in bare or "}" in bare:
                raise ValueError("texts may hold only {fieldName} placeholders (no other braces)")
        return v

    @model_validator(mode="after")
    def _timing(self) -> ChannelConfig:
        if self.sendTime is not None and (self.delayMinutes or self.delayHours):
            raise ValueError("sendTime with delayMinutes/delayHours is ambiguous: use delayDays after a sendTime")
        return self


class Channel(_Model):
    channelId: str
    type: Literal["email", "sms", "push", "phone", "in-app"]
    enabled: bool = True
    priority: int = Field(ge=1)
    config: ChannelConfig = ChannelConfig()


class Segment(_Model):
    """One offer segment: a score range and what the segment is offered.

    `impactLevel` / `riskLevel` name the segment (refunds / churn); win-back segments are named by offerType.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    scoreRange: tuple[float, float]
    impactLevel: str | None = None
    riskLevel: str | None = None
    offerType: str | None = None
    refundType: str | None = None
    discount: float | None = Field(default=None, ge=0, le=100)
    duration: int | None = Field(default=None, ge=1)
    refundAmount: float | None = Field(default=None, ge=0)
    creditAmount: float | None = Field(default=None, ge=0)
    additionalCredit: float | None = Field(default=None, ge=0)
    requireApproval: bool = False

    @field_validator("scoreRange")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0.0 <= lo < hi <= 1.0):
            raise ValueError(f"scoreRange must satisfy 0 <= low < high <= 1, got [{lo}, {hi}]")
        return v

    @property
    def name(self) -> str:
        return self.impactLevel or self.riskLevel or self.offerType or f"{self.scoreRange[0]}-{self.scoreRange[1]}"

    @property
    def offer_type(self) -> str:
        return self.refundType or self.offerType or self.name


class OfferStrategy(_Model):
    enabled: bool = True
    autoProcess: bool | None = None
    segmentedOffers: bool = True
    segmentScore: str | None = Field(default=None, description="modelId whose score picks the segment")
    segments: list[Segment] = Field(min_length=1)

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


class Holdout(_Model):
    percent: float = Field(default=10.0, ge=0, lt=100)
    salt: str = "engage-holdout-v1"


class Budget(_Model):
    amount: float = Field(gt=0, description="Most money the offers of one partition may cost")
    currency: Literal["USD"] = "USD"


class Deduplication(_Model):
    key: Literal["customer_id"] = "customer_id"
    keep: Literal["highest_score"] = "highest_score"


_EB_DOW = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


def eventbridge_to_cron(expr: str) -> str:
    """Translate an EventBridge `cron(m h dom mon dow year)` to the five-field cron Dagster uses.

    EventBridge numbers weekdays 1 = Sunday … 7 = Saturday; standard cron 0 = Sunday.  `?` becomes `*`.
    Only `*` is accepted in the year field.  `MON#1` (first Monday) becomes `1#1`.
    """
    m = re.fullmatch(r"\s*cron\((.*)\)\s*", expr)
    if not m:
        raise ValueError(f"batchSchedule must look like cron(m h dom mon dow year), got {expr!r}")
    fields = m.group(1).split()
    if len(fields) != 6:
        raise ValueError(f"EventBridge cron takes 6 fields (m h dom mon dow year), got {len(fields)} in {expr!r}")
    minute, hour, dom, month, dow, year = fields
    if year not in ("*", "?"):
        raise ValueError("only '*' is supported in the year field")
    if dom != "?" and dow != "?" and "*" not in (dom, dow):
        raise ValueError("one of day-of-month and day-of-week must be '?'")

    def weekday(token: str) -> str:
        def one(t: str) -> str:
            t = t.upper()
            if t in _EB_DOW:
                return str(_EB_DOW[t])
            if t.isdigit() and 1 <= int(t) <= 7:
                return str(int(t) - 1)
            raise ValueError(f"bad day-of-week {t!r}")

        if token in ("?", "*"):
            return "*"
        if "#" in token:
            day, nth = token.split("#", 1)
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise ValueError(f"bad nth weekday {token!r}")
            return f"{one(day)}#{nth}"
        return ",".join("-".join(one(p) for p in part.split("-")) for part in token.split(","))

    cron = " ".join([minute, hour, "*" if dom == "?" else dom, month, weekday(dow)])
    try:  # Dagster's own cron parser decides, through its public API
        dg.TimeWindowPartitionsDefinition(cron_schedule=cron, start="2020-01-01", fmt="%Y-%m-%d")
    except dg.DagsterInvalidDefinitionError:
        raise ValueError(f"{expr!r} translates to {cron!r}, which is not a valid cron") from None
    return cron


class ProgramConfig(_Model):
    programId: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    programName: str
    enabled: bool = True
    marketplaces: list[Literal["US", "UK", "DE", "FR", "JP", "IN", "BR", "AU"]] = Field(min_length=1)
    dataConnectors: list[DataConnector] = Field(min_length=1, max_length=1)
    scoringModels: list[ScoringModel] = Field(min_length=1)
    filterChain: list[FilterSpec]
    channels: list[Channel] = Field(default_factory=list)
    refundStrategy: OfferStrategy | None = None
    offerStrategy: OfferStrategy | None = None
    holdout: Holdout = Holdout()
    budget: Budget
    deduplication: Deduplication = Deduplication()
    batchSchedule: str
    partitionsStart: date
    candidateTTLDays: int = Field(ge=1, le=365)
    scoreCacheTTLDays: int = Field(default=30, ge=0, le=365)

    @field_validator("batchSchedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        eventbridge_to_cron(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ProgramConfig:
        if (self.refundStrategy is None) == (self.offerStrategy is None):
            raise ValueError("exactly one of refundStrategy and offerStrategy is required")
        orders = [f.order for f in self.filterChain]
        if len(set(orders)) != len(orders):
            raise ValueError(f"filterChain orders must be unique, got {orders}")
        ids = [m.modelId for m in self.scoringModels]
        if len(set(ids)) != len(ids):
            raise ValueError(f"scoringModels modelIds must be unique, got {ids}")
        seg_score = self.strategy.segmentScore
        if seg_score is not None and seg_score not in ids:
            raise ValueError(f"segmentScore {seg_score!r} is not one of the scoringModels {ids}")
        return self

    # ---- derived views -------------------------------------------------------------------------------
    @property
    def strategy(self) -> OfferStrategy:
        return self.refundStrategy or self.offerStrategy  # type: ignore[return-value]

    @property
    def group(self) -> str:
        """Dagster group and asset-key prefix: `proactive-refunds` → `proactive_refunds`."""
        return GROUP_NAMES.get(self.programId, self.programId.replace("-", "_"))

    @property
    def cron(self) -> str:
        return eventbridge_to_cron(self.batchSchedule)

    @property
    def connector(self) -> DataConnector:
        return self.dataConnectors[0]

    @property
    def segment_model(self) -> str:
        return self.strategy.segmentScore or self.scoringModels[0].modelId

    def ordered_filters(self) -> list[FilterSpec]:
        return sorted(self.filterChain, key=lambda f: f.order)


# The spec names the win-back program "win-back-campaigns"; its Dagster group is the shorter `win_back`.
GROUP_NAMES = {"win-back-campaigns": "win_back"}


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid program config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_program(path: Path) -> ProgramConfig:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return ProgramConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(path, e)) from None


def load_programs(directory: Path) -> list[ProgramConfig]:
    """All enabled programs in `directory`, sorted by programId; ids must be unique."""
    programs = [load_program(p) for p in sorted(directory.glob("*.yaml"))]
    seen: dict[str, str] = {}
    for p in programs:
        if p.programId in seen:
            raise ConfigError(f"programId {p.programId!r} is defined twice")
        seen[p.programId] = p.programName
    return [p for p in programs if p.enabled]
