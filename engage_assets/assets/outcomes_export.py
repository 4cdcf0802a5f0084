"""The spec's export of outcomes to the warehouse (#11, item 8): the `platform/outcomes_export` asset, one daily
partition per UTC day of the outcomes' `occurred_at`, writes what the outcome store recorded that day
(`OutcomeStore.between`) as the `outcomes` platform table (`engage_assets.domain.loop_tables.outcome_rows`) through
the `platform_history` resource: `<history>/outcomes/partition_key=<day>/candidates.parquet`, which dbt's
`platform.platform_outcomes` source reads (`stg_platform_outcomes`).  A re-run of a day replaces its file, so late
reports (providers retry for days) are picked up by re-running it.  The `outcomes_export_schedule` runs it daily at
00:30 UTC for the day just ended.

Outcomes kept aside for an unknown touch, and kinds the warehouse does not count, are not exported: the metadata
counts them by reason.  Counts only in metadata, never a customer id.
"""
# No `from __future__ import annotations`: Dagster reads the asset's context annotation at definition time.

from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from engage_assets.domain.loop_tables import OUTCOMES, outcome_rows
from resources.exports.base import ExportResource
from resources.outcomes.base import OutcomeStore

OUTCOMES_EXPORT_JOB = "outcomes_export"
OUTCOMES_EXPORT_KEY = dg.AssetKey(["platform", "outcomes_export"])
DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")


def export_outcomes_day(outcomes: OutcomeStore, history: ExportResource, day: str) -> dict[str, Any]:
    """Write (replacing) one UTC day's outcomes; metadata: rows written and those left out, by reason."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    records = outcomes.between(int(start.timestamp()), int(end.timestamp()))
    table, left_out = outcome_rows(records, datetime.now(UTC))
    uri = history.write_partition(OUTCOMES, day, table)
    by_type: dict[str, int] = {}
    for event_type in table.column("event_type").to_pylist():
        by_type[event_type] = by_type.get(event_type, 0) + 1
    return {
        "dagster/row_count": table.num_rows,
        "path": uri,
        **{f"event_type/{k}": v for k, v in sorted(by_type.items())},
        **{f"left_out/{k}": v for k, v in sorted(left_out.items())},
    }


@dg.asset(
    key=OUTCOMES_EXPORT_KEY,
    group_name="platform",
    partitions_def=DAYS,
    required_resource_keys={"outcomes", "platform_history"},
    kinds={"parquet"},
)
def outcomes_export(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """The outcome store's records of one UTC day (delivered, open, click, bounce, complaint, unsubscribe, failed,
    joined to their touches) exported as the warehouse's `outcomes` platform table; a re-run replaces the day."""
    meta = export_outcomes_day(context.resources.outcomes, context.resources.platform_history, context.partition_key)
    context.log.info(f"outcomes {context.partition_key}: {meta['dagster/row_count']} exported")
    return dg.MaterializeResult(metadata=meta)


OUTCOMES_EXPORT_SCHEDULE = dg.build_schedule_from_partitioned_job(  # its job comes with it into the Definitions
    dg.define_asset_job(
        OUTCOMES_EXPORT_JOB,
        selection=dg.AssetSelection.assets(OUTCOMES_EXPORT_KEY),
        partitions_def=DAYS,
        description="Export one day of outcomes (provider events) to the warehouse's `outcomes` platform table.",
    ),
    hour_of_day=0,
    minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
