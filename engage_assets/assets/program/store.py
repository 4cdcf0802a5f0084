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
from resources.batches import BATCHES, ParquetBatches
from resources.engagement.base import EngagementStore
from resources.exports.base import ExportResource
from resources.store.base import CandidateStore

# The offers' columns the platform's history reads (`engage_assets.assets.history.record_offers`).
HISTORY_COLUMNS = ("customer_id", "segment", "offer_type", "offer_value_usd", "holdout", "order_id")


def store_partition(
    program: ProgramConfig,
    store: CandidateStore,
    engagement: EngagementStore,
    window: PartitionWindow,
    offers: pa.Table | ParquetBatches,
    platform_history: ExportResource | None = None,
) -> tuple[None, dict[str, Any]]:
    """Write one partition's candidates (expiring `candidateTTLDays` after its as-of date), and its offers to the
    platform's history; metadata only.  The offers are read and written a batch at a time (`partition_write`:
    chunks staged, then the partition replaced at once); a table is one batch."""
    as_of = datetime.combine(window.end, datetime.min.time(), tzinfo=UTC)
    t0, now = time.perf_counter(), datetime.now(UTC)
    batches = offers.tables() if isinstance(offers, ParquetBatches) else [offers]
    versions = model_versions(offers.schema.empty_table() if isinstance(offers, ParquetBatches) else offers)
    erased = engagement.deleted_customers()
    excluded = records = 0
    writer = store.partition_write(program.programId, window.partition_key)
    try:
        for batch in batches:
            batch, dropped = without_customers(batch, erased)
            chunk = pipeline.candidate_records(program, batch, window.partition_key, as_of, versions, now=now)
            writer.add(chunk)
            excluded, records = excluded + dropped, records + len(chunk)
            # The batch's records are staged (or held by the writer as rows): free them before the next batch is
            # read and before the swap, whose page cache comes on top (the 10M run's peak is this stage).
            del batch, chunk
        result = writer.commit()
    except BaseException:
        writer.abort()
        raise
    wanted = [c for c in (*HISTORY_COLUMNS, program.connector.subjectColumn) if c in offers.schema.names]
    stored = offers.read(list(dict.fromkeys(wanted))) if isinstance(offers, ParquetBatches) else offers
    stored, _ = without_customers(stored, erased)
    late = erased_since(engagement, erased, stored)
    for customer in sorted(late):
        store.delete_customer(customer)
    offered = {}
    if platform_history is not None:
        kept, _ = without_customers(stored, late)
        offered = record_offers(platform_history, program, window.partition_key, window.end, kept)
    return None, {
        **offered,
        "dagster/row_count": records - len(late),
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
        ins={"offers": dg.AssetIn(stage_key(program, "offers"), metadata=BATCHES)},
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

        def one(window: PartitionWindow, batches: ParquetBatches) -> tuple[None, dict[str, Any]]:
            return store_partition(program, store, engagement, window, batches, platform_history)

        each_partition(context, parts, offers, one)
        return dg.MaterializeResult()

    return stored_candidates
