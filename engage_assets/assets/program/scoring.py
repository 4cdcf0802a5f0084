"""`[group, "scored_candidates"]`: every model's score from its promoted version, through the score cache.

The model assets themselves (`[group, "<model>_model"]`: train, promote if improved) are in `model`."""

import time
from collections.abc import Sequence
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
from engage_assets.assets.program.partitions import SINGLE_RUN, PartitionWindow, stream_partitions
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.models import ModelRef
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


def imputed_features(table: pa.Table, features: Sequence[str]) -> str:
    """Which features the model imputes in this batch (NULL there: a value the filter chain did not need, such as
    a damaged order's unparseable delay), with the row counts; "none" when every row has every feature."""
    nulls = {f: table.column(f).null_count for f in features if f in table.column_names}
    missing = {f: n for f, n in nulls.items() if n}
    return ", ".join(f"{f}={n}" for f, n in missing.items()) or "none"


def score_partition(
    program: ProgramConfig,
    refs: dict[str, ModelRef],
    scoring: ScoringResource,
    store: CandidateStore,
    table: pa.Table,
) -> tuple[pa.Table, dict[str, Any]]:
    """One partition's rows with a score column per model, `score` (the segment model's) and the versions used."""
    now = time.time()
    meta: dict[str, Any] = {}
    for spec in program.scoringModels:
        ref = refs[spec.modelId]
        scores, hits = score_with_cache(program, spec.features, ref, table, scoring, store, now)
        table = table.append_column(pipeline.score_column(spec.modelId), pa.array(scores))
        meta[f"model_version/{spec.modelId}"] = ref.version
        meta[f"cache_hits/{spec.modelId}"] = hits
        meta[f"imputed/{spec.modelId}"] = imputed_features(table, spec.features)
    table = table.append_column("score", table.column(pipeline.score_column(program.segment_model)))
    versions = {m: r.version for m, r in refs.items()}
    table = table.replace_schema_metadata({MODEL_VERSIONS_KEY: versions_json(versions)})
    if table.num_rows:
        s = table.column("score").to_numpy()
        meta.update({"score/mean": float(s.mean()), "score/p50": float(np.median(s))})
    return table, {"dagster/row_count": table.num_rows, **meta}


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
        ins={"eligible": dg.AssetIn(stage_key(program, "eligible_candidates"))},
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

        def one(window: PartitionWindow, table: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
            return score_partition(program, refs, scoring, store, table)

        return stream_partitions(context, parts, eligible, one)

    return scored_candidates
