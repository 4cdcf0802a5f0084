"""`callAssignment` (engage:): who the program's call tasks are assigned to, and when (`domain.call_assignment`)."""

from __future__ import annotations

import re

import dagster as dg
from pydantic import Field, field_validator

from engage_assets.domain.config.common import ConfigModel

_AGENT_ID = re.compile(r"[0-9a-f]{16}")  # an API key id (`engage_assets.serving.auth`)


class CallAssignment(ConfigModel):
    """engage: the spec's "Personal Call Campaign" job: open call tasks assigned to account managers, balancing
    their open load; an assigned task is listed for its manager and only they may claim it."""

    accountManagers: list[str] = Field(
        min_length=1,
        description="The account managers: the keyId (16 hex digits) of each one's `agent` API key, each once; the "
        "API shows a manager the tasks assigned to their key.",
    )
    schedule: str = Field(
        default="0 9 * * 1",
        description="When the assignment runs: a 5-field cron in UTC (default Monday 09:00, the spec's).",
    )

    @field_validator("accountManagers")
    @classmethod
    def _managers(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if not _AGENT_ID.fullmatch(m)]
        if bad:
            raise ValueError(f"account managers must be API key ids (16 hex digits), got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"account managers must be unique, got {v}")
        return v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"schedule must be a 5-field cron (minute hour day-of-month month day-of-week), got {v!r}")
        try:  # Dagster's own cron parser decides, through its public API
            dg.TimeWindowPartitionsDefinition(cron_schedule=v, start="2020-01-01", fmt="%Y-%m-%d")
        except dg.DagsterInvalidDefinitionError:
            raise ValueError(f"schedule {v!r} is not a valid cron") from None
        return v
