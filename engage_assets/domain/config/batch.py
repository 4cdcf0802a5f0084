"""A batch program: a warehouse query (`dataConnectors`) run on a schedule (`batchSchedule`), date partitions."""

from __future__ import annotations

import re
from datetime import date
from typing import ClassVar, Literal

import dagster as dg
from pydantic import Field, field_validator, model_validator

from engage_assets.domain.config.call_assignment import CallAssignment
from engage_assets.domain.config.common import (
    Budget,
    ColumnType,
    ConfigModel,
    OfferStrategy,
    ScoringModel,
    check_unique_model_ids,
)
from engage_assets.domain.config.offer_choice import OfferChoice
from engage_assets.domain.config.program import ProgramBase
from engage_assets.domain.source_columns import batch_column_types


class ConnectorConfig(ConfigModel):
    """Where the candidates come from: the mart and the query over it."""

    account: str | None = Field(default=None, description="Snowflake account (the spec's); production connection.")
    database: str | None = Field(default=None, description="Database (Athena / Snowflake) the query runs in.")
    schema_: str | None = Field(default=None, alias="schema", description="Schema (Snowflake) the query runs in.")
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


class DataConnector(ConfigModel):
    """One warehouse source, with the columns (and types) its query must return."""

    connectorId: str = Field(description="The connector's name.")
    type: Literal["athena", "snowflake", "duckdb"] = Field(
        description="The warehouse the spec names; the environment's warehouse resource runs the query (DuckDB "
        "locally, Snowflake or Athena in production)."
    )
    config: ConnectorConfig = Field(description="Where the candidates come from: the mart and the query.")
    subjectColumn: str = Field(
        default="customer_id",
        description="engage: the column naming a candidate's subject (an order for refunds; the customer by default).",
    )
    requiredColumns: dict[str, ColumnType] = Field(
        description="Columns the query must return, with their type: drift fails the run before anything is stored. "
        "A row whose value is NULL is rejected at the source with a reason, unless a filter of the chain reads the "
        "column: that filter's rule decides whether the row needs the value (a damaged order needs no delay)."
    )

    @model_validator(mode="after")
    def _keys_required(self) -> DataConnector:
        for col in ("customer_id", self.subjectColumn):
            if col not in self.requiredColumns:
                raise ValueError(f"requiredColumns must include {col!r}")
        return self


class Deduplication(ConfigModel):
    """A batch's duplicates: one candidate per customer, the highest score kept."""

    key: Literal["customer_id"] = Field(default="customer_id", description="One candidate per customer.")
    keep: Literal["highest_score"] = Field(default="highest_score", description="The best-scored row is kept.")


_EB_DOW = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


def _weekday(token: str) -> str:
    """An EventBridge day-of-week field (1 = Sunday, names, ranges, lists, `#n`) in standard cron (0 = Sunday)."""

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
    cron = " ".join([minute, hour, "*" if dom == "?" else dom, month, _weekday(dow)])
    try:  # Dagster's own cron parser decides, through its public API
        dg.TimeWindowPartitionsDefinition(cron_schedule=cron, start="2020-01-01", fmt="%Y-%m-%d")
    except dg.DagsterInvalidDefinitionError:
        raise ValueError(f"{expr!r} translates to {cron!r}, which is not a valid cron") from None
    return cron


class ProgramConfig(ProgramBase):
    """A batch program (refunds, win-back, churn): one warehouse query per date partition, on `batchSchedule`."""

    kind: ClassVar[str] = "batch"

    dataConnectors: list[DataConnector] = Field(
        min_length=1, max_length=1, description="The warehouse query that finds the candidates (exactly one)."
    )
    scoringModels: list[ScoringModel] = Field(min_length=1, description="Models that score each eligible row.")
    refundStrategy: OfferStrategy | None = Field(
        default=None, description="Refund programs: the offer per segment (exactly one of this and offerStrategy)."
    )
    offerStrategy: OfferStrategy | None = Field(
        default=None, description="Other programs: the offer per segment (exactly one of this and refundStrategy)."
    )
    budget: Budget = Field(description="engage: the most one partition's offers may cost.")
    offerChoice: OfferChoice | None = Field(
        default=None,
        description="engage: the acceptance model picks each candidate's offer by expected value within the budget "
        "(absent: each segment's own offer, best segment score first within the budget).",
    )
    callAssignment: CallAssignment | None = Field(
        default=None,
        description="engage: assign the program's open call tasks to these account managers on a schedule (absent: "
        "tasks wait unassigned for any agent to claim). Needs an enabled phone channel.",
    )
    deduplication: Deduplication = Field(default=Deduplication(), description="A batch's duplicate customers.")
    batchSchedule: str = Field(
        description="EventBridge `cron(m h dom mon dow year)`, UTC: the schedule and the partitions' cadence (daily, "
        "weekly, monthly)."
    )
    partitionsStart: date = Field(description="engage: the first partition (backfills start here).")

    @field_validator("batchSchedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        eventbridge_to_cron(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ProgramConfig:
        if (self.refundStrategy is None) == (self.offerStrategy is None):
            raise ValueError("exactly one of refundStrategy and offerStrategy is required")
        ids = check_unique_model_ids(self.scoringModels)
        seg_score = self.strategy.segmentScore
        if seg_score is not None and seg_score not in ids:
            raise ValueError(f"segmentScore {seg_score!r} is not one of the scoringModels {ids}")
        self._check_offer_choice(ids)
        if self.callAssignment is not None and not any(c.enabled and c.type == "phone" for c in self.channels):
            raise ValueError("callAssignment needs an enabled phone channel: the program makes no call tasks")
        return self

    def _check_offer_choice(self, ids: list[str]) -> None:
        choice = self.offerChoice
        if choice is None:
            return
        if choice.acceptanceModel not in ids:
            raise ValueError(
                f"offerChoice.acceptanceModel {choice.acceptanceModel!r} is not one of the scoringModels {ids}"
            )
        kind = self.batch_column_types().get(choice.valueColumn)
        if kind not in ("number", "integer"):
            found = "not a column of the batch" if kind is None else f"a {kind} column"
            raise ValueError(
                f"offerChoice.valueColumn {choice.valueColumn!r} must be a numeric batch column; it is {found}"
            )

    # ---- derived views -------------------------------------------------------------------------------
    @property
    def strategy(self) -> OfferStrategy:
        """The program's offer strategy (refunds or offers: exactly one is set)."""
        return self.refundStrategy or self.offerStrategy  # type: ignore[return-value]

    @property
    def cron(self) -> str:
        """The schedule (and partition cadence) as a five-field cron."""
        return eventbridge_to_cron(self.batchSchedule)

    @property
    def connector(self) -> DataConnector:
        """The program's one data connector."""
        return self.dataConnectors[0]

    @property
    def subject_column(self) -> str:
        """The connector's subject column."""
        return self.connector.subjectColumn

    def batch_column_types(self) -> dict[str, str]:
        """The connector's required columns and the ones the source stage adds."""
        return batch_column_types(dict(self.connector.requiredColumns))

    @property
    def segment_model(self) -> str:
        """The modelId whose score picks the segment."""
        return self.strategy.segmentScore or self.scoringModels[0].modelId
