"""GDPR erasure beyond the serving API's `DELETE /v1/customers/{id}`.

The API records the deletion and erases the customer at once from the candidate store, the in-app inbox, call
tasks and the delivery ledger; later runs exclude recorded deletions at the source stage, re-check them just before
the store write, the export and the touch plan (a customer deleted while a run is under way), and delivery re-checks
them at send time.  What the API cannot reach in the request, the daily `gdpr_erasure` job sweeps for every recorded
deletion:

- the exports of every program that has any (disabled and removed programs too): partitions that still hold the
  customer are rewritten without them;
- the platform's own history (offers and contacts, `engage_assets.assets.history`), rewritten the same way;
- the candidate store and the delivery ledger again (a run that wrote while the API erased; deletions recorded
  while the API ran without a ledger eraser);
- the stage outputs and rejection logs (`resources.staging`: every Parquet file under the stage root);
- what the channels keep locally: the SMS and push outboxes, the SMTP capture server's `.eml` files (matched by
  the customer's address, from the warehouse's contact rows).

It is idempotent: a second run finds nothing to remove.  Its op is in the warehouse pool, which the export asset
shares, so the rewrite of an export never races an export being written.

Metadata and logs carry counts only, never a customer id.
"""
# No `from __future__ import annotations`: Dagster reads the op's context annotation at definition time.

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from engage_assets.assets.dbt import WAREHOUSE_POOL
from engage_assets.assets.delivery import DeliveryLedgerResource
from engage_assets.domain.channels import channel_resource_keys
from engage_assets.domain.config import ProgramConfig
from resources.channels.base import DeliveryChannel
from resources.customer_state import CustomerState
from resources.engagement.base import EngagementStore
from resources.exports.base import ExportResource
from resources.staging import RejectionLogResource
from resources.store.base import CandidateStore

GDPR_JOB = "gdpr_erasure"
ERASURE_RESOURCE_KEYS = {
    "engagement",
    "exports",
    "delivery_ledger",
    "store",
    "rejections",
    "customer_state",
    "platform_history",
}


@dataclass
class ErasureTargets:
    """Everything the daily sweep erases from (built from a run's resources by `targets_from`)."""

    engagement: EngagementStore
    exports: ExportResource
    ledger: DeliveryLedgerResource
    store: CandidateStore | None = None
    stages: RejectionLogResource | None = None
    channels: Mapping[str, DeliveryChannel] | None = None
    contacts: Callable[[list[str]], Mapping[str, Mapping[str, Any]]] | None = None
    history: ExportResource | None = None  # the platform's own offers and contacts


def targets_from(resources: Any) -> ErasureTargets:
    """The sweep's targets from a run's `context.resources` (the channels by the registry's resource keys)."""
    customer_state: CustomerState = resources.customer_state
    return ErasureTargets(
        engagement=resources.engagement,
        exports=resources.exports,
        ledger=resources.delivery_ledger,
        store=resources.store,
        stages=resources.rejections,
        channels={key: getattr(resources, key) for key in channel_resource_keys()},
        contacts=customer_state.contacts,
        history=resources.platform_history,
    )


def erase_exports(exports: ExportResource, groups: list[str], erased: list[str]) -> dict[str, int]:
    """Rewrite the exported partitions that hold an erased customer, in every program that has exports."""
    out = {"export_partitions_rewritten": 0, "export_rows_removed": 0}
    for group in sorted(set(groups) | set(exports.programs())):
        if not exports.partition_keys(group):
            continue
        removed = exports.erase_customers(group, erased)
        out["export_partitions_rewritten"] += len(removed)
        out["export_rows_removed"] += sum(removed.values())
        if removed:
            exports.register(group)
    return out


def erase_history(history: ExportResource | None, erased: list[str]) -> dict[str, int]:
    """Rewrite the platform's history files that hold an erased customer (no view to register: dbt reads them)."""
    out = {"history_files_rewritten": 0, "history_rows_removed": 0}
    if history is None:
        return out
    for name in history.programs():
        removed = history.erase_customers(name, erased)
        out["history_files_rewritten"] += len(removed)
        out["history_rows_removed"] += sum(removed.values())
    return out


def erase_channel_copies(targets: ErasureTargets, erased: list[str]) -> dict[str, int]:
    """`<channel>_messages_removed`: the copies each channel keeps (outboxes, captured e-mails); contact rows are
    read from the warehouse once, and only if a channel asks for them."""
    fetched: dict[str, Mapping[str, Mapping[str, Any]]] = {}

    def contacts() -> Mapping[str, Mapping[str, Any]]:
        if "rows" not in fetched:
            fetched["rows"] = targets.contacts(erased) if targets.contacts else {}
        return fetched["rows"]

    return {
        f"{key.removesuffix('_channel')}_messages_removed": channel.erase_customers(erased, contacts)
        for key, channel in sorted((targets.channels or {}).items())
    }


def erase_recorded_deletions(targets: ErasureTargets, groups: list[str]) -> dict[str, Any]:
    """Erase every recorded deletion from everything the sweep reaches; returns counts."""
    erased = sorted(targets.engagement.deleted_customers())
    out: dict[str, Any] = {
        "deleted_customers": len(erased),
        "ledger_touches_removed": 0,
        "export_partitions_rewritten": 0,
        "export_rows_removed": 0,
        "store_candidates_removed": 0,
        "stage_files_rewritten": 0,
        "stage_rows_removed": 0,
        "history_files_rewritten": 0,
        "history_rows_removed": 0,
    }
    if not erased:
        return out
    out["ledger_touches_removed"] = targets.ledger.ledger().erase_customers(erased)
    out.update(erase_exports(targets.exports, groups, erased))
    out.update(erase_history(targets.history, erased))
    if targets.store is not None:
        out["store_candidates_removed"] = sum(targets.store.delete_customer(c) for c in erased)
    if targets.stages is not None:
        files = targets.stages.erase_customers(erased)
        out["stage_files_rewritten"], out["stage_rows_removed"] = files["files_rewritten"], files["rows_removed"]
    out.update(erase_channel_copies(targets, erased))
    return out


def build_gdpr_erasure(programs: list[ProgramConfig]) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    groups = [p.group for p in programs]

    @dg.op(
        name="erase_recorded_deletions",
        out=dg.Out(dg.Nothing),
        pool=WAREHOUSE_POOL,
        required_resource_keys=ERASURE_RESOURCE_KEYS | set(channel_resource_keys()),
        description="Erase recorded deletions from every program's exports (disabled ones too), the platform's "
        "history, the candidate store, the delivery ledger, stage and rejection files, outboxes and captured e-mails.",
    )
    def erase_op(context: dg.OpExecutionContext) -> dg.Output:
        counts = erase_recorded_deletions(targets_from(context.resources), groups)
        context.log.info("gdpr erasure: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        return dg.Output(None, metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()})

    @dg.job(
        name=GDPR_JOB,
        executor_def=dg.in_process_executor,
        description="GDPR: erase recorded deletions from past exports, the store, the ledger, stage files, outboxes "
        "and captures (daily).",
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
