"""`[group, "offers"]`: segments, one subject per customer, the holdout group and offers within the budget."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from engage_assets.assets.program.checks import offer_check_figures, offer_check_results, offer_check_specs
from engage_assets.assets.program.common import MODEL_VERSIONS_KEY, program_pool, program_tags, stage_key
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, stream_partitions
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from resources.staging import RejectionLogResource


def offers_partition(
    program: ProgramConfig, rejections: RejectionLogResource, window: PartitionWindow, scored: pa.Table
) -> tuple[pa.Table, dict[str, Any]]:
    """One partition's offers (still stamped with the model versions) and their metadata."""
    versions = (scored.schema.metadata or {}).get(MODEL_VERSIONS_KEY.encode(), b"{}")
    result = pipeline.make_offers(program, scored)
    rejections.write(program.group, "offers", window.partition_key, result.rejected)
    out = result.table.replace_schema_metadata({MODEL_VERSIONS_KEY: versions})
    by_type: dict[str, int] = {}
    if out.num_rows:
        # Sorted: Arrow's threaded group-by returns the groups in any order, and the metadata should read the same.
        counts = out.group_by("offer_type").aggregate([("offer_type", "count")]).to_pylist()
        for row in sorted(counts, key=lambda r: str(r["offer_type"])):
            by_type[row["offer_type"]] = row["offer_type_count"]
    holdout = np.asarray(out.column("holdout"), dtype=bool)
    return out, {
        "dagster/row_count": out.num_rows,
        **{f"removed/{k}": v for k, v in result.removed.items()},
        **{f"offers/{k}": v for k, v in by_type.items()},
        "holdout": int(holdout.sum()),
        "offer_cost_usd": round(float(np.asarray(out.column("offer_value_usd"))[~holdout].sum()), 2),
        "budget_usd": program.budget.amount,
        "segments": dg.MetadataValue.json(pipeline.score_distribution(out)),
    }


def offers_asset(program: ProgramConfig, parts: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """The program's `offers` asset, reading `scored_candidates`, with its two blocking checks."""

    @dg.asset(
        key=stage_key(program, "offers"),
        group_name=program.group,
        partitions_def=parts,
        tags=program_tags(program),
        kinds={"pyarrow"},
        pool=program_pool(program),
        backfill_policy=SINGLE_RUN,
        ins={"scored": dg.AssetIn(stage_key(program, "scored_candidates"))},
        check_specs=offer_check_specs(program),
        description="Segments from the config's score ranges, one subject per customer, the holdout "
        "(control) group by deterministic hash, and offers within the program's budget.",
    )
    def offers(
        context: dg.AssetExecutionContext, scored: Any, rejections: RejectionLogResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        """The offers of each partition of the run, then the checks over all of them (a range's partitions are
        computed as the IO manager writes the output, so the figures are complete when the checks run)."""
        figures: list[dict[str, Any]] = []

        def one(window: PartitionWindow, table: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
            out, meta = offers_partition(program, rejections, window, table)
            figures.append(offer_check_figures(program, window.partition_key, out))
            return out, meta

        yield dg.Output(stream_partitions(context, parts, scored, one))
        yield from offer_check_results(program, figures)

    return offers
