"""`[group, "scored_candidates"]`: every model's score from its promoted version, through the score cache; the
partition read and scored a record batch at a time (`resources.batches`).

The model assets themselves (`[group, "<model>_model"]`: train, promote if improved) are in `model`."""

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from engage_assets.assets.program.common import (
    MODEL_VERSIONS_KEY,
    program_pool,
    program_tags,
    stage_key,
    versions_json,
)
from engage_assets.assets.program.model import model_keys, promoted_refs
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, stream_batches
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.models import ModelRef
from resources.batches import BATCHES, BatchOutput, ParquetBatches
from resources.scoring.base import ScoringResource
from resources.staging import ModelStoreResource
from resources.store.base import CandidateStore


def score_with_cache(
    program: ProgramConfig,
    features: Sequence[str],
    ref: ModelRef,
    table: pa.Table,
    scoring: ScoringResource,
    store: CandidateStore,
    now: float,
) -> tuple[np.ndarray, int]:
    """Scores for every row; rows seen within scoreCacheTTLDays with the same features come from the cache."""
    n = table.num_rows
    if n == 0:
        return np.zeros(0), 0
    frame = pipeline.feature_frame(table, list(features))
    if program.scoreCacheTTLDays == 0:
        return scoring.score(ref, frame), 0
    keys = pipeline.cache_keys(table, program.connector.subjectColumn, frame)
    namespace = f"{program.programId}/{ref.model_id}@{ref.version}"
    cached = store.get_cached_scores(namespace, keys, now=now)
    scores = np.empty(n)
    miss = np.fromiter((k not in cached for k in keys), dtype=bool, count=n)
    hit_idx = np.flatnonzero(~miss)
    scores[hit_idx] = [cached[keys[i]] for i in hit_idx]
    miss_idx = np.flatnonzero(miss)
    if len(miss_idx):
        fresh = scoring.score(ref, frame.iloc[miss_idx].reset_index(drop=True))
        scores[miss_idx] = fresh
        expires = int(now + program.scoreCacheTTLDays * 86400)
        store.put_cached_scores(namespace, {keys[i]: float(s) for i, s in zip(miss_idx, fresh, strict=False)}, expires)
    return scores, int(len(hit_idx))


def null_counts(table: pa.Table, features: Sequence[str]) -> dict[str, int]:
    """NULLs per feature in this batch (the features the table has)."""
    return {f: table.column(f).null_count for f in features if f in table.column_names}


def imputed_text(nulls: Mapping[str, int]) -> str:
    """The `imputed/<model>` metadata: the features with NULLs and how many, "none" when there are none."""
    return ", ".join(f"{f}={n}" for f, n in nulls.items() if n) or "none"


def imputed_features(table: pa.Table, features: Sequence[str]) -> str:
    """Which features the model imputes in this batch (NULL there: a value the filter chain did not need, such as
    a damaged order's unparseable delay), with the row counts; "none" when every row has every feature."""
    return imputed_text(null_counts(table, features))


def score_batch(
    program: ProgramConfig,
    refs: dict[str, ModelRef],
    scoring: ScoringResource,
    store: CandidateStore,
    table: pa.Table,
    now: float,
) -> tuple[pa.Table, dict[str, int]]:
    """A batch's rows with a score column per model, `score` (the segment model's) and the versions used; the
    score-cache hits per model.  Row by row: a batch scores as it would within its whole partition."""
    hits: dict[str, int] = {}
    for spec in program.scoringModels:
        scores, hits[spec.modelId] = score_with_cache(
            program, spec.features, refs[spec.modelId], table, scoring, store, now
        )
        table = table.append_column(pipeline.score_column(spec.modelId), pa.array(scores, pa.float64()))
    table = table.append_column("score", table.column(pipeline.score_column(program.segment_model)))
    versions = {m: r.version for m, r in refs.items()}
    return table.replace_schema_metadata({MODEL_VERSIONS_KEY: versions_json(versions)}), hits


def score_partition(
    program: ProgramConfig,
    refs: dict[str, ModelRef],
    scoring: ScoringResource,
    store: CandidateStore,
    eligible: ParquetBatches,
) -> BatchOutput:
    """One partition scored a batch at a time (`score_batch`); its metadata (cache hits and NULL features summed
    over the batches, the score's mean and median read back from the written file) once the file is complete."""
    now = time.time()
    hits = {spec.modelId: 0 for spec in program.scoringModels}
    nulls: dict[str, dict[str, int]] = {spec.modelId: {} for spec in program.scoringModels}

    def batches() -> Iterator[pa.Table]:
        for table in eligible.tables():
            scored, batch_hits = score_batch(program, refs, scoring, store, table, now)
            for spec in program.scoringModels:
                hits[spec.modelId] += batch_hits[spec.modelId]
                for feature, n in null_counts(table, spec.features).items():
                    nulls[spec.modelId][feature] = nulls[spec.modelId].get(feature, 0) + n
            yield scored

    def metadata(path: str) -> dict[str, Any]:
        score = ParquetBatches(path).read(["score"]).column("score").to_numpy()
        meta: dict[str, Any] = {"dagster/row_count": len(score)}
        for spec in program.scoringModels:
            meta[f"model_version/{spec.modelId}"] = refs[spec.modelId].version
            meta[f"cache_hits/{spec.modelId}"] = hits[spec.modelId]
            meta[f"imputed/{spec.modelId}"] = imputed_text(nulls[spec.modelId])
        if len(score):
            meta.update({"score/mean": float(score.mean()), "score/p50": float(np.median(score))})
        return meta

    return BatchOutput(batches(), metadata)


def scored_asset(program: ProgramConfig, parts: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """The program's `scored_candidates` asset, reading `eligible_candidates`, after every model asset."""

    @dg.asset(
        key=stage_key(program, "scored_candidates"),
        group_name=program.group,
        partitions_def=parts,
        tags=program_tags(program),
        kinds={"scikit-learn"},
        pool=program_pool(program),
        backfill_policy=SINGLE_RUN,
        ins={"eligible": dg.AssetIn(stage_key(program, "eligible_candidates"), metadata=BATCHES)},
        deps=model_keys(program),
        description="Every configured model's score, from the promoted version (stamped per score), "
        "through the score cache (TTL scoreCacheTTLDays); a NULL feature is imputed by the model (median, with a "
        "missing flag) and counted in the `imputed/<model>` metadata.",
    )
    def scored_candidates(
        context: dg.AssetExecutionContext,
        eligible: Any,
        scoring: ScoringResource,
        store: CandidateStore,
        models: ModelStoreResource,
    ) -> Any:
        """The scored rows of each partition of the run."""
        refs = promoted_refs(program, models.registry())

        def one(window: PartitionWindow, batches: ParquetBatches) -> BatchOutput:
            return score_partition(program, refs, scoring, store, batches)

        return stream_batches(context, parts, eligible, one)

    return scored_candidates
