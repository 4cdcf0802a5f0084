"""What every program kind shares: identity, marketplaces, the filter chain, channels, holdout, lifetimes, delivery
options."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from engage_assets.domain.config.channels import Channel
from engage_assets.domain.config.common import GROUP_NAMES, ConfigModel, FilterSpec, Holdout, Marketplace
from engage_assets.domain.filter_expression import ExpressionError, check_against
from engage_assets.domain.filter_params import ExpressionParams

DEFAULT_STALE_AFTER_HOURS = 72.0


class DeliveryOptions(ConfigModel):
    """`delivery`: how the program's planned touches are delivered.

    A touch whose planned send time (`dueAt`) lies more than `staleAfterHours` before the delivery run's send clock
    is recorded with state `stale` and never sent: backfilling last month replays the decisions without contacting
    anyone about old events.  A delivery run with `send_stale: true` in its run config sends such touches anyway.
    The default (three days) lets touches delayed by a weekend's outage still go out; a program whose touches may
    wait longer (a refund awaiting approval) sets a longer window.
    """

    staleAfterHours: float = Field(
        default=DEFAULT_STALE_AFTER_HOURS,
        gt=0,
        le=24 * 366,
        description="A touch planned more than this many hours before the send clock is recorded `stale`, not sent "
        "(a delivery run with send_stale: true sends it anyway).",
    )

    @property
    def stale_after_s(self) -> int:
        """The window in seconds."""
        return int(self.staleAfterHours * 3600)


class ProgramBase(ConfigModel):
    """The fields and views a batch program (`ProgramConfig`) and a reactive one (`ReactiveProgram`) share."""

    kind: ClassVar[str] = ""

    programId: str = Field(
        pattern=r"^[a-z][a-z0-9-]*$",
        description="Unique id (lower-case, digits, dashes): keys the store, the ledger, the API routes and the "
        "Dagster group (dashes become underscores).",
    )
    programName: str = Field(description="The name people read: the UI, the run summary, messages.")
    enabled: bool = Field(
        default=True, description="false: the program is not loaded — no assets, schedule, sensor or delivery."
    )
    marketplaces: list[Marketplace] = Field(
        min_length=1,
        description="Only customers of these marketplaces become candidates (the rest are set aside at the source, "
        "counted, with their reason); also each marketplace's default time zone, currency and locale.",
    )
    filterChain: list[FilterSpec] = Field(
        description="The filters, run in `order` over the whole batch; a row leaves at the first check it fails, "
        "with that check's reason (see Filter rules)."
    )
    channels: list[Channel] = Field(
        default_factory=list, description="How candidates are contacted, each channel with its timing and texts."
    )
    holdout: Holdout = Field(default=Holdout(), description="The control group.")
    candidateTTLDays: int = Field(
        ge=1, le=365, description="Days a stored candidate (and its touches) stays live: served, deliverable."
    )
    scoreCacheTTLDays: int = Field(
        default=30,
        ge=0,
        le=365,
        description="Days a score is reused for the same subject with the same features (0: no cache).",
    )
    delivery: DeliveryOptions = Field(default=DeliveryOptions(), description="How the planned touches are delivered.")

    @model_validator(mode="after")
    def _unique_filter_orders(self) -> ProgramBase:
        orders = [f.order for f in self.filterChain]
        if len(set(orders)) != len(orders):
            raise ValueError(f"filterChain orders must be unique, got {orders}")
        ids = [f.filterId for f in self.filterChain]
        if len(set(ids)) != len(ids):
            raise ValueError(f"filterChain filterIds must be unique (counts and reasons are keyed by them), got {ids}")
        return self

    @model_validator(mode="after")
    def _expressions_fit_the_batch(self) -> ProgramBase:
        """Each `expression` filter reads only columns the batch has, and gives TRUE/FALSE over their types."""
        errors = []
        for i, spec in enumerate(self.filterChain):
            if spec.rule != "expression":
                continue
            params = ExpressionParams.model_validate(spec.parameters)
            try:
                check_against(params.parsed, self.batch_column_types())
            except ExpressionError as e:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError("filter_expression", "{detail}", {"detail": str(e)}),
                        loc=("filterChain", i, "parameters", "expression"),
                        input=params.expression,
                    )
                )
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def batch_column_types(self) -> dict[str, str]:
        """The columns of the batch the filter chain runs over, with their `ColumnType` (`domain.source_columns`)."""
        raise NotImplementedError

    @property
    def group(self) -> str:
        """Dagster group and asset-key prefix: `proactive-refunds` → `proactive_refunds`."""
        return GROUP_NAMES.get(self.programId, self.programId.replace("-", "_"))

    @property
    def subject_column(self) -> str:
        """The column that names a candidate's subject (an order, a cart); the customer by default."""
        return "customer_id"

    def ordered_filters(self) -> list[FilterSpec]:
        """The filter chain in the order it runs."""
        return sorted(self.filterChain, key=lambda f: f.order)
