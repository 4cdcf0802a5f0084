"""Score drift per model: an asset check on `[group, "scored_candidates"]`, one per model, `score_drift_<model>`.

The population stability index (PSI) of the partition's scores against the scores of the rows the version was
trained on (ten equal-count bins of the training scores, stored with the version in the registry:
`evaluation.score_reference`).  Threshold `PSI_THRESHOLD` = 0.25, the usual reading of the index: under 0.1 the
population is stable, 0.1 to 0.25 a moderate shift worth watching, over 0.25 a major shift: the model is scoring
people unlike those it learned from, so its scores (and the segments cut from them) deserve a look or a retraining.
The check warns (WARN severity, not blocking): a shift is a reason to look, not to withhold the day's offers.

A program's candidates are a filtered subset of the history the model trains on, so some shift is expected by design;
the metadata carries the index, the share of scores in each training bin and the version compared, so a person can
tell a filter's shift from the world's.  Partitioned like the asset: a run over a range checks its latest partition.
"""

from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from engage_assets.assets.program.common import model_versions, program_tags, stage_key
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig, ScoringModel
from engage_assets.domain.models import ModelRegistry, psi
from resources.staging import ModelStoreResource, RejectionLogResource

PSI_THRESHOLD = 0.25


def drift_check_name(model_id: str) -> str:
    """`score_drift_<model>`, e.g. `score_drift_churn_risk_v6`."""
    return "score_drift_" + model_id.replace("-", "_").replace(".", "_")


def drift_result(
    program: ProgramConfig, spec: ScoringModel, registry: ModelRegistry, table: pa.Table, partition: str
) -> dg.AssetCheckResult:
    """The check's verdict on one scored partition (module docstring)."""
    name = drift_check_name(spec.modelId)
    version = model_versions(table).get(spec.modelId)
    column = pipeline.score_column(spec.modelId)
    meta: dict[str, Any] = {"partition": partition, "threshold": PSI_THRESHOLD, "version": version or "none"}
    if version is None or column not in table.column_names or table.num_rows == 0:
        return dg.AssetCheckResult(
            check_name=name, passed=True, metadata=meta, description=f"partition {partition}: no scores to compare"
        )
    reference = registry.metadata(program.programId, spec.modelId, version).get("score_reference")
    if not reference:
        return dg.AssetCheckResult(
            check_name=name,
            passed=True,
            metadata=meta,
            description=f"{spec.modelId}@{version} has no training-score reference (trained before drift tracking): "
            "retrain it to track drift",
        )
    scores = np.asarray(table.column(column), dtype="float64")
    index = psi(reference, scores)
    edges = np.asarray(reference["edges"])
    shares = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(edges) + 1) / len(scores)
    passed = index <= PSI_THRESHOLD
    return dg.AssetCheckResult(
        check_name=name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{spec.modelId}@{version}, partition {partition}: PSI {index:.3f} "
        + ("within" if passed else "over")
        + f" {PSI_THRESHOLD} against its training scores",
        metadata={
            **meta,
            "psi": float(index),
            "rows": len(scores),
            "share_by_training_decile": ", ".join(f"{s:.3f}" for s in shares),
        },
    )


def drift_check(program: ProgramConfig, spec: ScoringModel, parts: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    """The `score_drift_<model>` check of one model (module docstring)."""
    scored = stage_key(program, "scored_candidates")

    # The check reads the scored partition's one score column from its stage file, not the whole table through the IO
    # manager (the 50M bench's 2.3M scored rows whole: ~500 MB more in the run).  Without the asset as an argument,
    # Dagster still runs the check after the asset.
    @dg.asset_check(
        asset=scored,
        name=drift_check_name(spec.modelId),
        partitions_def=parts,
        op_tags=program_tags(program),
        description=f"Score drift of {spec.modelId}: PSI of the partition's scores against the version's training "
        f"scores; warns over {PSI_THRESHOLD} (under 0.1 stable, 0.1-0.25 moderate, over 0.25 a major shift).",
    )
    def score_drift(
        context: dg.AssetCheckExecutionContext, models: ModelStoreResource, rejections: RejectionLogResource
    ) -> dg.AssetCheckResult:
        execution = context.op_execution_context
        # A range run: its latest partition.
        partition = execution.partition_key if execution.has_partition_key else execution.partition_key_range.end
        batches = rejections.stage_output(program.group, "scored_candidates", partition)
        column = pipeline.score_column(spec.modelId)
        table = batches.read([column] if column in batches.schema.names else [])
        return drift_result(program, spec, models.registry(), table, partition)

    return score_drift


def drift_checks(program: ProgramConfig, parts: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """One drift check per model of the program."""
    return [drift_check(program, spec, parts) for spec in program.scoringModels]
