"""Asset factory: one program YAML → its Dagster asset family, checks, partitioned job and schedule.

Keys are `[group, stage]` for the stages source_candidates → eligible_candidates → scored_candidates → offers →
stored_candidates → warehouse_export, and `[group, "<model>_model"]` for each model the program trains.
Each program is partitioned on its own cadence, read from `batchSchedule`, and its schedule uses that cron.
"""

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from engage_assets import pipeline
from engage_assets.config import ProgramConfig
from engage_assets.dbt import WAREHOUSE_POOL, mart_asset_key
from engage_assets.models import train_model
from engage_assets.sources import PartitionWindow, SchemaDriftError, check_schema, enrichment_sql, probe_sql, split_invalid
from resources.exports import ExportResource
from resources.staging import ModelStoreResource, RejectionLogResource
from resources.scoring import ScoringResource
from resources.store import CandidateStore
from resources.warehouse import WarehouseResource

STAGES = ("source_candidates", "eligible_candidates", "scored_candidates", "offers", "stored_candidates",
          "warehouse_export")


def model_asset_name(model_id: str) -> str:
    return model_id.replace("-", "_").replace(".", "_") + "_model"


def partitions_for(program: ProgramConfig) -> dg.TimeWindowPartitionsDefinition:
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=program.cron, start=program.partitionsStart.isoformat(), fmt="%Y-%m-%d", timezone="UTC"
    )


def window_of(context: dg.AssetExecutionContext) -> PartitionWindow:
    tw = context.partition_time_window
    return PartitionWindow(context.partition_key, tw.start.date(), tw.end.date())


def _counts_md(counts: dict[str, int], header: str) -> str:
    lines = [f"| {header} | rows |", "|---|---:|"] + [f"| {k} | {v:,} |" for k, v in counts.items()]
    return "\n".join(lines)


@dataclass
class ProgramDefs:
    assets: list[Any]
    asset_checks: list[Any]
    jobs: list[Any]
    schedules: list[Any]
    model_keys: list[dg.AssetKey]


def build_program(program: ProgramConfig) -> ProgramDefs:  # noqa: C901 - one closure per stage reads best
    g = program.group
    parts = partitions_for(program)
    subject = program.connector.subjectColumn
    required = program.connector.requiredColumns
    tags = {"engage/program": program.programId}

    def key(stage: str) -> dg.AssetKey:
        return dg.AssetKey([g, stage])

    # ---- models ----------------------------------------------------------------------------------------
    model_assets = []
    for spec in program.scoringModels:
        def make_model_asset(spec=spec):
            @dg.asset(
                key=key(model_asset_name(spec.modelId)), group_name=g, deps=[mart_asset_key(spec.trainingTable)],
                pool=WAREHOUSE_POOL, kinds={"scikit-learn"}, tags=tags,
                description=f"{spec.modelId}: trained on `{spec.trainingTable}` to predict `{spec.label}`; "
                            "promoted only if it beats the current version on the holdout (deploy if improved).",
            )
            def _model(context: dg.AssetExecutionContext, warehouse: WarehouseResource, models: ModelStoreResource):
                columns = list(dict.fromkeys([*spec.features, spec.label]
                                             + ([spec.truthColumn] if spec.truthColumn else [])))
                data = warehouse.query_arrow(
                    f"SELECT {', '.join(columns)} FROM marts.{spec.trainingTable}").to_pandas()
                trained = train_model(spec.modelId, program.programId, spec.features, data, spec.label,
                                      truth_column=spec.truthColumn)
                registry = models.registry()
                promoted, reason = registry.promote_if_improved(trained)
                current = registry.current(program.programId, spec.modelId)
                context.log.info(f"{spec.modelId} {trained.version}: {reason}")
                return dg.MaterializeResult(metadata={
                    "version": trained.version,
                    "promoted": promoted,
                    "promotion_reason": reason,
                    "current_version": current.version if current else None,
                    "training_rows": len(data),
                    **{f"holdout/{k}": float(v) for k, v in trained.metrics.items()
                       if isinstance(v, (int, float))},
                })
            return _model
        model_assets.append(make_model_asset())
    model_keys = [key(model_asset_name(m.modelId)) for m in program.scoringModels]

    # ---- stages ----------------------------------------------------------------------------------------
    connector = program.connector

    @dg.asset(
        key=key("source_candidates"), group_name=g, partitions_def=parts, pool=WAREHOUSE_POOL, tags=tags,
        deps=[mart_asset_key(connector.config.table), mart_asset_key("customers"), mart_asset_key("offer_history")],
        kinds={"duckdb" if connector.type != "snowflake" else "snowflake", "pyarrow"},
        description=f"{program.programName}: the `{connector.connectorId}` query for the partition, with customer "
                    "context and offer history; rows with a NULL or ill-typed required field are rejected.",
    )
    def source_candidates(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                          rejections: RejectionLogResource) -> pa.Table:
        window = window_of(context)
        params = window.params(program.programId)
        probe = warehouse.query_arrow(probe_sql(program), params)
        try:
            check_schema(probe.schema, required, f"{connector.connectorId} ({connector.config.table})")
        except SchemaDriftError as e:
            raise dg.Failure(description=str(e)) from None
        t0 = time.perf_counter()
        table = warehouse.query_arrow(enrichment_sql(program, probe.column_names), params)
        valid, invalid = split_invalid(table, required)
        rej = pipeline.source_rejections(program, invalid)
        path = rejections.write(g, "source_candidates", window.partition_key, rej)
        reasons = {}
        if invalid.num_rows:
            for c in invalid.group_by("rejection_reason").aggregate([("rejection_reason", "count")]).to_pylist():
                reasons[c["rejection_reason"]] = c["rejection_reason_count"]
        context.add_output_metadata({
            "dagster/row_count": valid.num_rows,
            "rows_read": table.num_rows,
            "rejected_invalid": invalid.num_rows,
            "rejections": _counts_md(reasons, "reason") if reasons else "none",
            "rejections_path": path,
            "as_of_date": window.end.isoformat(),
            "query_seconds": round(time.perf_counter() - t0, 2),
        })
        return valid

    @dg.asset(key=key("eligible_candidates"), group_name=g, partitions_def=parts, tags=tags, kinds={"duckdb"},
              ins={"source": dg.AssetIn(key("source_candidates"))},
              description="The config's filter chain in order, in one vectorised pass; every rejected row is kept "
                          "with the filter and reason that removed it.")
    def eligible_candidates(context: dg.AssetExecutionContext, source: pa.Table,
                            rejections: RejectionLogResource) -> pa.Table:
        result = pipeline.apply_filter_chain(program, source)
        path = rejections.write(g, "eligible_candidates", context.partition_key, result.rejected)
        stages = [("source", source.num_rows)]
        n = source.num_rows
        for fid, removed in result.removed.items():
            n -= removed
            stages.append((fid, n))
        context.add_output_metadata({
            "dagster/row_count": result.table.num_rows,
            **{f"removed/{fid}": v for fid, v in result.removed.items()},
            "funnel": dg.MetadataValue.md(pipeline.funnel_markdown(stages)),
            "rejections_path": path,
        })
        return result.table

    @dg.asset(key=key("scored_candidates"), group_name=g, partitions_def=parts, tags=tags, kinds={"scikit-learn"},
              ins={"eligible": dg.AssetIn(key("eligible_candidates"))}, deps=model_keys,
              description="Every configured model's score, from the promoted version (stamped per score), "
                          "through the score cache (TTL scoreCacheTTLDays).")
    def scored_candidates(context: dg.AssetExecutionContext, eligible: pa.Table, scoring: ScoringResource,
                          store: CandidateStore, models: ModelStoreResource) -> pa.Table:
        registry = models.registry()
        now = time.time()
        table = eligible
        meta: dict[str, Any] = {}
        for spec in program.scoringModels:
            ref = registry.current(program.programId, spec.modelId, endpoint=spec.endpoint)
            if ref is None:
                raise dg.Failure(description=f"model {spec.modelId!r} has no promoted version yet: materialize "
                                             f"{key(model_asset_name(spec.modelId)).to_user_string()} first")
            scores, hits = _score_with_cache(program, spec.features, ref, table, subject, scoring, store, now)
            table = table.append_column(pipeline.score_column(spec.modelId), pa.array(scores))
            meta[f"model_version/{spec.modelId}"] = ref.version
            meta[f"cache_hits/{spec.modelId}"] = hits
        seg_col = pipeline.score_column(program.segment_model)
        table = table.append_column("score", table.column(seg_col))
        versions = {m: v for m, v in ((k.split("/", 1)[1], v) for k, v in meta.items() if k.startswith("model_v"))}
        table = table.replace_schema_metadata({"engage.model_versions": _json(versions)})
        if table.num_rows:
            s = table.column("score").to_numpy()
            meta.update({"score/mean": float(s.mean()), "score/p50": float(np.median(s))})
        context.add_output_metadata({"dagster/row_count": table.num_rows, **meta})
        return table

    @dg.asset(key=key("offers"), group_name=g, partitions_def=parts, tags=tags, kinds={"pyarrow"},
              ins={"scored": dg.AssetIn(key("scored_candidates"))},
              check_specs=[
                  dg.AssetCheckSpec("within_budget", asset=key("offers"), blocking=True,
                                    description="Offers never exceed the program's budget."),
                  dg.AssetCheckSpec("holdout_and_segments", asset=key("offers"), blocking=True,
                                    description="The holdout share is near the configured percent and every "
                                                "candidate has a segment."),
              ],
              description="Segments from the config's score ranges, one subject per customer, the holdout "
                          "(control) group by deterministic hash, and offers within the program's budget.")
    def offers(context: dg.AssetExecutionContext, scored: pa.Table, rejections: RejectionLogResource):
        versions = (scored.schema.metadata or {}).get(b"engage.model_versions", b"{}")
        result = pipeline.make_offers(program, scored)
        rejections.write(g, "offers", context.partition_key, result.rejected)
        out = result.table.replace_schema_metadata({"engage.model_versions": versions})
        by_type: dict[str, int] = {}
        if out.num_rows:
            for row in out.group_by("offer_type").aggregate([("offer_type", "count")]).to_pylist():
                by_type[row["offer_type"]] = row["offer_type_count"]
        holdout = np.asarray(out.column("holdout"), dtype=bool)
        cost = float(np.asarray(out.column("offer_value_usd"))[~holdout].sum())
        yield dg.Output(out, metadata={
            "dagster/row_count": out.num_rows,
            **{f"removed/{k}": v for k, v in result.removed.items()},
            **{f"offers/{k}": v for k, v in by_type.items()},
            "holdout": int(holdout.sum()),
            "offer_cost_usd": round(cost, 2),
            "budget_usd": program.budget.amount,
            "segments": dg.MetadataValue.json(pipeline.score_distribution(out)),
        })
        yield dg.AssetCheckResult(check_name="within_budget", passed=cost <= program.budget.amount + 1e-6,
                                  metadata={"offer_cost_usd": round(cost, 2), "budget_usd": program.budget.amount})
        n = out.num_rows
        share = float(holdout.mean()) if n else 0.0
        expected = program.holdout.percent / 100
        tolerance = 4 * float(np.sqrt(expected * (1 - expected) / n)) + 0.002 if n else 1.0
        missing_segment = out.column("segment").null_count
        yield dg.AssetCheckResult(
            check_name="holdout_and_segments",
            passed=abs(share - expected) <= tolerance and missing_segment == 0,
            metadata={"holdout_share": round(share, 4), "expected": expected, "missing_segment": missing_segment},
        )

    @dg.asset(key=key("stored_candidates"), group_name=g, partitions_def=parts, tags=tags,
              ins={"offers": dg.AssetIn(key("offers"))},
              description="The partition's candidates in the candidate store (idempotent: a re-run replaces "
                          "the partition's items; expiresAt = as-of date + candidateTTLDays).")
    def stored_candidates(context: dg.AssetExecutionContext, offers: pa.Table, store: CandidateStore
                          ) -> dg.MaterializeResult:
        window = window_of(context)
        versions = _versions(offers)
        as_of = datetime.combine(window.end, datetime.min.time(), tzinfo=timezone.utc)
        t0 = time.perf_counter()
        records = pipeline.candidate_records(program, offers, window.partition_key, as_of, versions)
        result = store.replace_partition(program.programId, window.partition_key, records)
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(records),
            "written": result.written, "deleted_stale": result.deleted, "skipped_newer": result.skipped_newer,
            "stored_in_partition": store.count(program.programId, window.partition_key, now=time.time()),
            "expires_at": (as_of + timedelta(days=program.candidateTTLDays)).isoformat(),
            "store_seconds": round(time.perf_counter() - t0, 2),
        })

    @dg.asset(key=key("warehouse_export"), group_name=g, partitions_def=parts, tags=tags, pool=WAREHOUSE_POOL,
              kinds={"parquet"}, ins={"offers": dg.AssetIn(key("offers"))}, deps=[key("stored_candidates")],
              description="The stored candidates as Parquet per partition, registered as the warehouse table "
                          "`exports.<program>` analysts can query.")
    def warehouse_export(context: dg.AssetExecutionContext, offers: pa.Table, exports: ExportResource
                         ) -> dg.MaterializeResult:
        table = pipeline.export_table(program, offers, context.partition_key, _versions(offers))
        uri = exports.write_partition(g, context.partition_key, table)
        name = exports.register(g)
        return dg.MaterializeResult(metadata={
            "dagster/row_count": table.num_rows, "path": uri, "table": name,
        })

    stage_assets = [source_candidates, eligible_candidates, scored_candidates, offers, stored_candidates,
                    warehouse_export]
    job = dg.define_asset_job(
        name=f"{g}_batch", selection=dg.AssetSelection.assets(*stage_assets), partitions_def=parts, tags=tags,
        description=f"{program.programName}: source → filters → scores → offers → store → export, one partition.",
    )
    schedule = dg.build_schedule_from_partitioned_job(job, name=f"{g}_schedule")
    return ProgramDefs(
        assets=[*model_assets, *stage_assets],
        asset_checks=[],
        jobs=[job], schedules=[schedule], model_keys=model_keys,
    )


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def _versions(table: pa.Table) -> dict[str, str]:
    import json

    raw = (table.schema.metadata or {}).get(b"engage.model_versions", b"{}")
    return json.loads(raw)


def _score_with_cache(program, features, ref, table, subject, scoring, store, now) -> tuple[np.ndarray, int]:
    """Scores for every row; rows seen within scoreCacheTTLDays with the same features come from the cache."""
    n = table.num_rows
    if n == 0:
        return np.zeros(0), 0
    frame = pipeline.feature_frame(table, list(features))
    if program.scoreCacheTTLDays == 0:
        return scoring.score(ref, frame), 0
    keys = pipeline.cache_keys(table, subject, frame)
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
        store.put_cached_scores(namespace, {keys[i]: float(s) for i, s in zip(miss_idx, fresh)}, expires)
    return scores, int(len(hit_idx))
