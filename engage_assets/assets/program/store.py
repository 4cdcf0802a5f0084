"""`[group, "stored_candidates"]`: the partition's candidates in the candidate store, replacing the partition.

GDPR: the deletions are re-read just before the write (a customer erased while the run was under way is not
written), and again after it (a deletion recorded during the write, whose API call erased the store before this
run wrote, is erased again at once); `excluded_erased` counts both.

The candidates offered (not held out) are also written to the platform's own history (`engage_assets.assets.history`),
which `marts.offer_history` reads: the next partitions' look-backs and caps count them."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa

from engage_assets.assets.history import record_offers
from engage_assets.assets.program.common import (
    erased_since,
    model_versions,
    program_pool,
    program_tags,
    stage_key,
    without_customers,
)
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, each_partition
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from resources.engagement.base import EngagementStore
from resources.exports.base import ExportResource
from resources.store.base import CandidateStore


def store_partition(
    program: ProgramConfig,
    store: CandidateStore,
    engagement: EngagementStore,
    window: PartitionWindow,
    offers: pa.Table,
    platform_history: ExportResource | None = None,
) -> tuple[None, dict[str, Any]]:
    """Write one partition's candidates (expiring `candidateTTLDays` after its as-of date), and its offers to the
    platform's history; metadata only."""
    as_of = datetime.combine(window.end, datetime.min.time(), tzinfo=UTC)
    t0 = time.perf_counter()
    erased = engagement.deleted_customers()
    offers, excluded = without_customers(offers, erased)
    records = pipeline.candidate_records(program, offers, window.partition_key, as_of, model_versions(offers))
    result = store.replace_partition(program.programId, window.partition_key, records)
    late = erased_since(engagement, erased, offers)
    for customer in sorted(late):
        store.delete_customer(customer)
    offered = {}
    if platform_history is not None:
        kept, _ = without_customers(offers, late)
        offered = record_offers(platform_history, program, window.partition_key, window.end, kept)
    return None, {
        **offered,
        "dagster/row_count": len(records) - len(late),
        "written": result.written,
        "deleted_stale": result.deleted,
        "skipped_newer": result.skipped_newer,
        "excluded_erased": excluded + len(late),
        "stored_in_partition": store.count(program.programId, window.partition_key, now=time.time()),
        "expires_at": (as_of + timedelta(days=program.candidateTTLDays)).isoformat(),
        "store_seconds": round(time.perf_counter() - t0, 2),
    }


def store_asset(program: ProgramConfig, parts: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """The program's `stored_candidates` asset, reading `offers`."""

    @dg.asset(
        key=stage_key(program, "stored_candidates"),
        group_name=program.group,
        partitions_def=parts,
        tags=program_tags(program),
        pool=program_pool(program),
        backfill_policy=SINGLE_RUN,
        ins={"offers": dg.AssetIn(stage_key(program, "offers"))},
        description="The partition's candidates in the candidate store (idempotent: a re-run replaces "
        "the partition's items; expiresAt = as-of date + candidateTTLDays); customers deleted (GDPR) while the run "
        "was under way are not written. The offers made are recorded in the platform's history (the warehouse's "
        "`marts.offer_history` reads it).",
    )
    def stored_candidates(
        context: dg.AssetExecutionContext,
        offers: Any,
        store: CandidateStore,
        engagement: EngagementStore,
        platform_history: ExportResource,
    ) -> dg.MaterializeResult:
        """Store each partition of the run, one after another (each partition's metadata on its own)."""

        def one(window: PartitionWindow, table: pa.Table) -> tuple[None, dict[str, Any]]:
            return store_partition(program, store, engagement, window, table, platform_history)

        each_partition(context, parts, offers, one)
        return dg.MaterializeResult()

    return stored_candidates
