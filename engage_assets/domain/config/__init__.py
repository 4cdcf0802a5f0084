"""Program configuration: the spec's "Program Configuration" blocks as validated pydantic models.

Two kinds of program, told apart by where their candidates come from: a batch program (`ProgramConfig`,
`dataConnectors` + `batchSchedule`, date partitions) and a reactive one (`ReactiveProgram`, `eventSources`, hourly
partitions).  A bad config fails loading with the file, the field path and the reason, so
`dagster definitions validate` and the test suite catch it, never a 2 AM run.

Modules: `common` (base model, errors, scoring models, filters, segments, holdout, budget), `channels` (channel
configs from the channel registry), `program` (what both kinds share), `batch`, `reactive`, `loader` (YAML,
the discriminated union, error formatting).  Import the names from this package.
"""

from engage_assets.domain.config.batch import (
    ConnectorConfig,
    DataConnector,
    Deduplication,
    ProgramConfig,
    eventbridge_to_cron,
)
from engage_assets.domain.config.channels import CHANNEL_CONFIG_MODELS, Channel, ChannelConfig, ChannelType
from engage_assets.domain.config.common import (
    GROUP_NAMES,
    Budget,
    ColumnType,
    ConfigError,
    ConfigModel,
    FilterSpec,
    Holdout,
    Marketplace,
    OfferStrategy,
    ScoringModel,
    ScoringModelBase,
    Segment,
)
from engage_assets.domain.config.loader import (
    PROGRAM_ADAPTER,
    AnyProgram,
    format_error,
    load_program,
    load_programs,
    program_kind,
    validate_program,
)
from engage_assets.domain.config.offer_choice import OfferChoice
from engage_assets.domain.config.program import DEFAULT_STALE_AFTER_HOURS, DeliveryOptions, ProgramBase
from engage_assets.domain.config.reactive import (
    DiscountStrategy,
    EventDeduplication,
    EventSource,
    EventSourceConfig,
    ReactiveProgram,
    check_event_pattern,
)

__all__ = [
    "CHANNEL_CONFIG_MODELS",
    "DEFAULT_STALE_AFTER_HOURS",
    "GROUP_NAMES",
    "PROGRAM_ADAPTER",
    "AnyProgram",
    "Budget",
    "Channel",
    "ChannelConfig",
    "ChannelType",
    "ColumnType",
    "ConfigError",
    "ConfigModel",
    "ConnectorConfig",
    "DataConnector",
    "Deduplication",
    "DeliveryOptions",
    "DiscountStrategy",
    "EventDeduplication",
    "EventSource",
    "EventSourceConfig",
    "FilterSpec",
    "Holdout",
    "Marketplace",
    "OfferChoice",
    "OfferStrategy",
    "ProgramBase",
    "ProgramConfig",
    "ReactiveProgram",
    "ScoringModel",
    "ScoringModelBase",
    "Segment",
    "check_event_pattern",
    "eventbridge_to_cron",
    "format_error",
    "load_program",
    "load_programs",
    "program_kind",
    "validate_program",
]
