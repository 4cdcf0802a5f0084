"""GDPR erasure beyond the serving API's `DELETE /v1/customers/{id}`.

The API records the deletion and erases the customer at once from the candidate store, the in-app inbox, call
tasks and the delivery ledger; later runs exclude recorded deletions at the source stage, and delivery re-checks
them at send time.  What the API cannot reach in the request: Parquet exports written before the deletion (one
file per partition, possibly in S3).  The daily `gdpr_erasure` job does: for every recorded deletion it rewrites
each program's exported partitions that still hold the customer, and clears the delivery ledger again (deletions
recorded while the API ran without a ledger eraser).  It is idempotent: a second run finds nothing to remove.

Metadata and logs carry counts only, never a customer id.
"""
# No `from __future__ import annotations`: Dagster reads the op's context annotation at definition time.

from typing import Any

import dagster as dg

from engage_assets.assets.delivery import DeliveryLedgerResource
from engage_assets.domain.config import ProgramConfig
from resources.engagement.base import EngagementStore
from resources.exports.base import ExportResource

GDPR_JOB = "gdpr_erasure"


def erase_recorded_deletions(
    engagement: EngagementStore, exports: ExportResource, ledger: DeliveryLedgerResource, groups: list[str]
) -> dict[str, Any]:
    """Erase every recorded deletion from the exports of `groups` and from the delivery ledger; returns counts."""
    erased = sorted(engagement.deleted_customers())
    out: dict[str, Any] = {
        "deleted_customers": len(erased),
        "ledger_touches_removed": 0,
        "export_partitions_rewritten": 0,
        "export_rows_removed": 0,
    }
    if not erased:
        return out
    out["ledger_touches_removed"] = ledger.ledger().erase_customers(erased)
    for group in groups:
        if not exports.partition_keys(group):
            continue
        removed = exports.erase_customers(group, erased)
        out["export_partitions_rewritten"] += len(removed)
        out["export_rows_removed"] += sum(removed.values())
        if removed:
            exports.register(group)
    return out


def build_gdpr_erasure(programs: list[ProgramConfig]) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    groups = [p.group for p in programs]

    @dg.op(
        name="erase_recorded_deletions",
        out=dg.Out(dg.Nothing),
        description="Rewrite exported partitions that still hold a deleted customer; clear their ledger touches.",
    )
    def erase_op(
        context: dg.OpExecutionContext,
        engagement: EngagementStore,
        exports: ExportResource,
        delivery_ledger: DeliveryLedgerResource,
    ) -> dg.Output:
        counts = erase_recorded_deletions(engagement, exports, delivery_ledger, groups)
        context.log.info("gdpr erasure: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        return dg.Output(None, metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()})

    @dg.job(
        name=GDPR_JOB,
        executor_def=dg.in_process_executor,
        description="GDPR: erase recorded deletions from past exports and the delivery ledger (daily).",
    )
    def gdpr_job() -> None:
        erase_op()

    # 04:00: after the 02:00 batch programs have written the day's exports.
    return gdpr_job, dg.ScheduleDefinition(
        name="gdpr_erasure_schedule",
        job=gdpr_job,
        cron_schedule="0 4 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
