"""`[group, "offers"]`: segments, one subject per customer, the holdout group and offers within the budget."""

import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from engage_assets.assets.program.checks import offer_check_figures, offer_check_results, offer_check_specs
from engage_assets.assets.program.choice import choice_metadata
from engage_assets.assets.program.common import MODEL_VERSIONS_KEY, program_pool, program_tags, stage_key
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, stream_batches
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.offer_choice import OfferBudget
from engage_assets.domain.offer_decision import OfferDecision, apply_offers, decide_offers
from engage_assets.domain.offer_order import decision_columns, offer_priority
from resources.batches import BATCHES, BatchOutput, BatchWriter, ParquetBatches, ordered_groups, write_batches
from resources.staging import RejectionLogResource


def offers_metadata(program: ProgramConfig, out: pa.Table, removed: Mapping[str, int]) -> dict[str, Any]:
    """A partition's offers metadata, from its offers (`NARROW` columns are enough) and the rows each step removed."""
    by_type: dict[str, int] = {}
    if out.num_rows:
        # Sorted: Arrow's threaded group-by returns the groups in any order, and the metadata should read the same.
        counts = out.group_by("offer_type").aggregate([("offer_type", "count")]).to_pylist()
        for row in sorted(counts, key=lambda r: str(r["offer_type"])):
            by_type[row["offer_type"]] = row["offer_type_count"]
    holdout = np.asarray(out.column("holdout"), dtype=bool)
    return {
        "dagster/row_count": out.num_rows,
        **{f"removed/{k}": v for k, v in removed.items()},
        **{f"offers/{k}": v for k, v in by_type.items()},
        "holdout": int(holdout.sum()),
        "offer_cost_usd": round(float(np.asarray(out.column("offer_value_usd"))[~holdout].sum()), 2),
        "budget_usd": program.budget.amount,
        **choice_metadata(program, out),
        "segments": dg.MetadataValue.json(pipeline.score_distribution(out)),
    }


ROW, PRIORITY = "__row", "__priority"  # a decision row's position in the partition, and its `offer_priority`


def decide_partition(program: ProgramConfig, scored: ParquetBatches, tmp: str) -> OfferDecision:
    """The partition's offer decisions, row by row in file order: its `decision_columns` (a few numbers a row, with
    their positions and priorities) written to `tmp`, sorted into the budget's order by DuckDB (`ordered_groups`) and
    decided a batch at a time with one budget carried over."""
    narrow_path = os.path.join(tmp, "decision-columns.parquet")

    def narrow_tables() -> Iterator[pa.Table]:
        start = 0
        for table in scored.tables(decision_columns(program, scored.schema.names)):
            table = table.append_column(ROW, pa.array(np.arange(start, start + table.num_rows, dtype=np.int64)))
            yield table.append_column(PRIORITY, pa.array(offer_priority(program, table), pa.float64()))
            start += table.num_rows

    rows = write_batches(narrow_tables(), narrow_path)
    decision, budget = OfferDecision.empty(rows), OfferBudget(program.budget.amount)
    narrow = ParquetBatches(narrow_path, scored.batch_rows)
    subject = program.connector.subjectColumn
    for batch in ordered_groups(narrow, PRIORITY, "customer_id", "score", tiebreak=subject):
        decision.put(batch.column(ROW).to_numpy(), decide_offers(program, batch, budget))
    if decision.undecided():
        raise RuntimeError(
            f"{decision.undecided()} of {rows} scored rows were not decided (lost in the budget's order)"
        )
    return decision


# The offers' columns the partition's metadata and checks read back from its file (never the whole table).
NARROW = ("segment", "score", "holdout", "offer_type", "offer_value_usd", "expected_value_usd")


def offers_partition(
    program: ProgramConfig,
    rejections: RejectionLogResource,
    window: PartitionWindow,
    scored: ParquetBatches,
    figures: list[dict[str, Any]],
) -> BatchOutput:
    """One partition's offers (still stamped with the model versions), in two passes.  First the decisions, on the
    partition's `decision_columns` alone, a batch at a time in the order the budget is spent
    (`domain.offer_order`: each customer's subjects in one batch, one `OfferBudget` carried from batch to batch), so
    they are the whole partition's in one `decide_offers` call; then the wide rows, streamed in file order, each
    batch's decisions attached (`apply_offers`).  The metadata and the checks' figures are read back from the
    written file; the rejections are spilled to a temporary file batch by batch and logged after the last batch."""
    versions = (scored.schema.metadata or {}).get(MODEL_VERSIONS_KEY.encode(), b"{}")
    removed: dict[str, int] = {}

    def batches() -> Iterator[pa.Table]:
        with tempfile.TemporaryDirectory(prefix="engage-offers-") as tmp:
            decision = decide_partition(program, scored, tmp)
            removed.update(decision.removed())
            rejected = BatchWriter(os.path.join(tmp, "rejected.parquet"))  # a budget may reject most rows: spilled
            start = 0
            for batch in scored.tables():
                result = apply_offers(program, batch, decision.rows(slice(start, start + batch.num_rows)))
                start += batch.num_rows
                rejected.write(result.rejected)
                yield result.table.replace_schema_metadata({MODEL_VERSIONS_KEY: versions})
            rejected.close()
            spilled = ParquetBatches(os.path.join(tmp, "rejected.parquet"), scored.batch_rows).tables()
            rejections.write_batches(program.group, "offers", window.partition_key, spilled)

    def metadata(path: str) -> dict[str, Any]:
        written = ParquetBatches(path)
        out = written.read([c for c in NARROW if c in written.schema.names])
        figures.append(offer_check_figures(program, window.partition_key, out))
        return offers_metadata(program, out, removed)

    return BatchOutput(batches(), metadata)


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
        ins={"scored": dg.AssetIn(stage_key(program, "scored_candidates"), metadata=BATCHES)},
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

        def one(window: PartitionWindow, batches: ParquetBatches) -> BatchOutput:
            return offers_partition(program, rejections, window, batches, figures)

        yield dg.Output(stream_batches(context, parts, scored, one))
        yield from offer_check_results(program, figures)

    return offers
