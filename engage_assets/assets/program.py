"""Asset factory: one program YAML → its Dagster asset family, checks, partitioned job and schedule.

Keys are `[group, stage]` for the stages source_candidates → eligible_candidates → scored_candidates → offers →
stored_candidates → warehouse_export, and `[group, "<model>_model"]` for each model the program trains.
Each program is partitioned on its own cadence, read from `batchSchedule`, and its schedule uses that cron.
"""

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.assets.dbt import WAREHOUSE_POOL, mart_asset_key
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.models import train_model
from engage_assets.domain.sources import (
    PartitionWindow,
    SchemaDriftError,
    check_schema,
    enrichment_sql,
    probe_sql,
    split_invalid,
)
from resources.engagement.base import EngagementStore
from resources.exports.base import ExportResource
from resources.scoring.base import ScoringResource
from resources.staging import ModelStoreResource, RejectionLogResource
from resources.store.base import CandidateStore
from resources.warehouse.base import WarehouseResource

# Backfills of a date range run as one run (the UI's default for these assets, and what
# `dagster asset materialize --partition-range` needs); every partition is still processed on its own.
SINGLE_RUN = dg.BackfillPolicy.single_run()
# `backfill_policy` is marked beta on @asset; it is the documented way to get single-run backfills.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
STAGES = (
    "source_candidates",
    "eligible_candidates",
    "scored_candidates",
    "offers",
    "stored_candidates",
    "warehouse_export",
)


def model_asset_name(model_id: str) -> str:
    return model_id.replace("-", "_").replace(".", "_") + "_model"


def partitions_for(program: ProgramConfig) -> dg.TimeWindowPartitionsDefinition:
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=program.cron, start=program.partitionsStart.isoformat(), fmt="%Y-%m-%d", timezone="UTC"
    )


def windows_of(context: dg.AssetExecutionContext, parts: dg.TimeWindowPartitionsDefinition) -> list[PartitionWindow]:
    """The partitions a run covers: one (a scheduled run, a multi-run backfill) or a range (a single-run backfill
    from the UI, or `dagster asset materialize --partition-range`)."""
    out = []
    for pk in context.partition_keys:
        tw = parts.time_window_for_partition_key(pk)
        out.append(PartitionWindow(pk, tw.start.date(), tw.end.date()))
    return out


def each_partition(
    context: dg.AssetExecutionContext,
    parts: dg.TimeWindowPartitionsDefinition,
    upstream: Any,
    one: Callable[[PartitionWindow, Any], tuple[Any, dict[str, Any]]],
) -> tuple[Any, dict[str, Any]]:
    """Run `one(window, upstream) -> (value, metadata)` for every partition of the run.

    One partition: its value and metadata as they are. A range: a `{partition_key: value}` dict (the IO manager
    writes one file per partition, and loads a range as such a dict) and metadata summed over the partitions, with
    the per-partition row counts as a table.  Each partition is processed on its own, exactly as a one-partition
    run would, so a range run and N single runs leave the same results.
    """
    windows = windows_of(context, parts)
    if len(windows) == 1:
        w = windows[0]
        return one(w, upstream[w.partition_key] if isinstance(upstream, dict) else upstream)
    values: dict[str, Any] = {}
    rows: dict[str, int] = {}
    for w in windows:
        values[w.partition_key], meta = one(w, upstream[w.partition_key] if isinstance(upstream, dict) else upstream)
        rows[w.partition_key] = int(meta.get("dagster/row_count", 0))
    return values, {
        "partitions": len(windows),
        "dagster/row_count": sum(rows.values()),
        "rows_per_partition": dg.MetadataValue.md(_counts_md(rows, "partition")),
    }


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
                key=key(model_asset_name(spec.modelId)),
                group_name=g,
                deps=[mart_asset_key(spec.trainingTable)],
                pool=WAREHOUSE_POOL,
                kinds={"scikit-learn"},
                tags=tags,
                description=f"{spec.modelId}: trained on `{spec.trainingTable}` to predict `{spec.label}`; "
                "promoted only if it beats the current version on the holdout (deploy if improved).",
            )
            def _model(context: dg.AssetExecutionContext, warehouse: WarehouseResource, models: ModelStoreResource):
                columns = list(
                    dict.fromkeys([*spec.features, spec.label] + ([spec.truthColumn] if spec.truthColumn else []))
                )
                data = warehouse.query_arrow(f"SELECT {', '.join(columns)} FROM marts.{spec.trainingTable}").to_pandas()
                trained = train_model(
                    spec.modelId, program.programId, spec.features, data, spec.label, truth_column=spec.truthColumn
                )
                registry = models.registry()
                promoted, reason = registry.promote_if_improved(trained)
                current = registry.current(program.programId, spec.modelId)
                context.log.info(f"{spec.modelId} {trained.version}: {reason}")
                return dg.MaterializeResult(
                    metadata={
                        "version": trained.version,
                        "promoted": promoted,
                        "promotion_reason": reason,
                        "current_version": current.version if current else None,
                        "training_rows": len(data),
                        **{f"holdout/{k}": float(v) for k, v in trained.metrics.items() if isinstance(v, (int, float))},
                    }
                )

            return _model

        model_assets.append(make_model_asset())
    model_keys = [key(model_asset_name(m.modelId)) for m in program.scoringModels]

    # ---- stages ----------------------------------------------------------------------------------------
    connector = program.connector

    @dg.asset(
        key=key("source_candidates"),
        group_name=g,
        partitions_def=parts,
        pool=WAREHOUSE_POOL,
        tags=tags,
        backfill_policy=SINGLE_RUN,
        deps=[mart_asset_key(connector.config.table), mart_asset_key("customers"), mart_asset_key("offer_history")],
        kinds={"duckdb" if connector.type != "snowflake" else "snowflake", "pyarrow"},
        description=f"{program.programName}: the `{connector.connectorId}` query for the partition, with customer "
        "context and offer history; rows with a NULL or ill-typed required field are rejected.",
    )
    def source_candidates(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        rejections: RejectionLogResource,
        engagement: EngagementStore,
    ):
        # Customers erased under GDPR never become candidates again, and leave no trace in the rejection logs.
        erased = pa.array(sorted(engagement.deleted_customers()), pa.string())

        def one(window: PartitionWindow, _: Any) -> tuple[pa.Table, dict[str, Any]]:
            params = window.params(program.programId)
            probe = warehouse.query_arrow(probe_sql(program), params)
            try:
                check_schema(probe.schema, required, f"{connector.connectorId} ({connector.config.table})")
            except SchemaDriftError as e:
                raise dg.Failure(description=str(e)) from None
            t0 = time.perf_counter()
            table = warehouse.query_arrow(enrichment_sql(program, probe.column_names), params)
            rows_read = table.num_rows
            if len(erased):
                table = table.filter(pc.invert(pc.is_in(table.column("customer_id").cast(pa.string()), erased)))
            valid, invalid = split_invalid(table, required)
            rej = pipeline.source_rejections(program, invalid)
            path = rejections.write(g, "source_candidates", window.partition_key, rej)
            reasons = {}
            if invalid.num_rows:
                for c in invalid.group_by("rejection_reason").aggregate([("rejection_reason", "count")]).to_pylist():
                    reasons[c["rejection_reason"]] = c["rejection_reason_count"]
            return valid, {
                "dagster/row_count": valid.num_rows,
                "rows_read": rows_read,
                "excluded_erased": rows_read - table.num_rows,
                "rejected_invalid": invalid.num_rows,
                "rejections": _counts_md(reasons, "reason") if reasons else "none",
                "rejections_path": path,
                "as_of_date": window.end.isoformat(),
                "query_seconds": round(time.perf_counter() - t0, 2),
            }

        value, meta = each_partition(context, parts, None, one)
        context.add_output_metadata(meta)
        return value

    @dg.asset(
        key=key("eligible_candidates"),
        group_name=g,
        partitions_def=parts,
        tags=tags,
        kinds={"duckdb"},
        backfill_policy=SINGLE_RUN,
        ins={"source": dg.AssetIn(key("source_candidates"))},
        description="The config's filter chain in order, in one vectorised pass; every rejected row is kept "
        "with the filter and reason that removed it.",
    )
    def eligible_candidates(context: dg.AssetExecutionContext, source, rejections: RejectionLogResource):
        def one(window: PartitionWindow, source: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
            result = pipeline.apply_filter_chain(program, source)
            path = rejections.write(g, "eligible_candidates", window.partition_key, result.rejected)
            stages = [("source", source.num_rows)]
            n = source.num_rows
            for fid, removed in result.removed.items():
                n -= removed
                stages.append((fid, n))
            return result.table, {
                "dagster/row_count": result.table.num_rows,
                **{f"removed/{fid}": v for fid, v in result.removed.items()},
                "funnel": dg.MetadataValue.md(pipeline.funnel_markdown(stages)),
                "rejections_path": path,
            }

        value, meta = each_partition(context, parts, source, one)
        context.add_output_metadata(meta)
        return value

    @dg.asset(
        key=key("scored_candidates"),
        group_name=g,
        partitions_def=parts,
        tags=tags,
        kinds={"scikit-learn"},
        backfill_policy=SINGLE_RUN,
        ins={"eligible": dg.AssetIn(key("eligible_candidates"))},
        deps=model_keys,
        description="Every configured model's score, from the promoted version (stamped per score), "
        "through the score cache (TTL scoreCacheTTLDays).",
    )
    def scored_candidates(
        context: dg.AssetExecutionContext,
        eligible,
        scoring: ScoringResource,
        store: CandidateStore,
        models: ModelStoreResource,
    ):
        registry = models.registry()
        refs = {}
        for spec in program.scoringModels:
            refs[spec.modelId] = registry.current(program.programId, spec.modelId, endpoint=spec.endpoint)
            if refs[spec.modelId] is None:
                raise dg.Failure(
                    description=f"model {spec.modelId!r} has no promoted version yet: materialize "
                    f"{key(model_asset_name(spec.modelId)).to_user_string()} first"
                )

        def one(window: PartitionWindow, table: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
            now = time.time()
            meta: dict[str, Any] = {}
            for spec in program.scoringModels:
                ref = refs[spec.modelId]
                scores, hits = _score_with_cache(program, spec.features, ref, table, subject, scoring, store, now)
                table = table.append_column(pipeline.score_column(spec.modelId), pa.array(scores))
                meta[f"model_version/{spec.modelId}"] = ref.version
                meta[f"cache_hits/{spec.modelId}"] = hits
            table = table.append_column("score", table.column(pipeline.score_column(program.segment_model)))
            versions = {m: r.version for m, r in refs.items()}
            table = table.replace_schema_metadata({"engage.model_versions": _json(versions)})
            if table.num_rows:
                s = table.column("score").to_numpy()
                meta.update({"score/mean": float(s.mean()), "score/p50": float(np.median(s))})
            return table, {"dagster/row_count": table.num_rows, **meta}

        value, meta = each_partition(context, parts, eligible, one)
        context.add_output_metadata(meta)
        return value

    @dg.asset(
        key=key("offers"),
        group_name=g,
        partitions_def=parts,
        tags=tags,
        kinds={"pyarrow"},
        backfill_policy=SINGLE_RUN,
        ins={"scored": dg.AssetIn(key("scored_candidates"))},
        check_specs=[
            dg.AssetCheckSpec(
                "within_budget",
                asset=key("offers"),
                blocking=True,
                description="Offers never exceed the program's budget.",
            ),
            dg.AssetCheckSpec(
                "holdout_and_segments",
                asset=key("offers"),
                blocking=True,
                description="The holdout share is near the configured percent and every candidate has a segment.",
            ),
        ],
        description="Segments from the config's score ranges, one subject per customer, the holdout "
        "(control) group by deterministic hash, and offers within the program's budget.",
    )
    def offers(context: dg.AssetExecutionContext, scored, rejections: RejectionLogResource):
        checks: list[dict[str, Any]] = []

        def one(window: PartitionWindow, scored: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
            versions = (scored.schema.metadata or {}).get(b"engage.model_versions", b"{}")
            result = pipeline.make_offers(program, scored)
            rejections.write(g, "offers", window.partition_key, result.rejected)
            out = result.table.replace_schema_metadata({"engage.model_versions": versions})
            by_type: dict[str, int] = {}
            if out.num_rows:
                for row in out.group_by("offer_type").aggregate([("offer_type", "count")]).to_pylist():
                    by_type[row["offer_type"]] = row["offer_type_count"]
            holdout = np.asarray(out.column("holdout"), dtype=bool)
            cost = float(np.asarray(out.column("offer_value_usd"))[~holdout].sum())
            n = out.num_rows
            share = float(holdout.mean()) if n else 0.0
            expected = program.holdout.percent / 100
            tolerance = 4 * float(np.sqrt(expected * (1 - expected) / n)) + 0.002 if n else 1.0
            checks.append(
                {
                    "partition": window.partition_key,
                    "cost": cost,
                    "share": share,
                    "holdout_ok": abs(share - expected) <= tolerance,
                    "missing_segment": out.column("segment").null_count,
                }
            )
            return out, {
                "dagster/row_count": n,
                **{f"removed/{k}": v for k, v in result.removed.items()},
                **{f"offers/{k}": v for k, v in by_type.items()},
                "holdout": int(holdout.sum()),
                "offer_cost_usd": round(cost, 2),
                "budget_usd": program.budget.amount,
                "segments": dg.MetadataValue.json(pipeline.score_distribution(out)),
            }

        value, meta = each_partition(context, parts, scored, one)
        yield dg.Output(value, metadata=meta)
        worst_cost = max(c["cost"] for c in checks)
        yield dg.AssetCheckResult(
            check_name="within_budget",
            passed=worst_cost <= program.budget.amount + 1e-6,
            metadata={"offer_cost_usd": round(worst_cost, 2), "budget_usd": program.budget.amount},
        )
        yield dg.AssetCheckResult(
            check_name="holdout_and_segments",
            passed=all(c["holdout_ok"] and c["missing_segment"] == 0 for c in checks),
            metadata={
                "holdout_share": round(min(c["share"] for c in checks), 4),
                "expected": program.holdout.percent / 100,
                "missing_segment": sum(c["missing_segment"] for c in checks),
            },
        )

    @dg.asset(
        key=key("stored_candidates"),
        group_name=g,
        partitions_def=parts,
        tags=tags,
        backfill_policy=SINGLE_RUN,
        ins={"offers": dg.AssetIn(key("offers"))},
        description="The partition's candidates in the candidate store (idempotent: a re-run replaces "
        "the partition's items; expiresAt = as-of date + candidateTTLDays).",
    )
    def stored_candidates(context: dg.AssetExecutionContext, offers, store: CandidateStore) -> dg.MaterializeResult:
        def one(window: PartitionWindow, offers: pa.Table) -> tuple[None, dict[str, Any]]:
            as_of = datetime.combine(window.end, datetime.min.time(), tzinfo=UTC)
            t0 = time.perf_counter()
            records = pipeline.candidate_records(program, offers, window.partition_key, as_of, _versions(offers))
            result = store.replace_partition(program.programId, window.partition_key, records)
            return None, {
                "dagster/row_count": len(records),
                "written": result.written,
                "deleted_stale": result.deleted,
                "skipped_newer": result.skipped_newer,
                "stored_in_partition": store.count(program.programId, window.partition_key, now=time.time()),
                "expires_at": (as_of + timedelta(days=program.candidateTTLDays)).isoformat(),
                "store_seconds": round(time.perf_counter() - t0, 2),
            }

        return dg.MaterializeResult(metadata=each_partition(context, parts, offers, one)[1])

    @dg.asset(
        key=key("warehouse_export"),
        group_name=g,
        partitions_def=parts,
        tags=tags,
        pool=WAREHOUSE_POOL,
        backfill_policy=SINGLE_RUN,
        kinds={"parquet"},
        ins={"offers": dg.AssetIn(key("offers"))},
        deps=[key("stored_candidates")],
        description="The stored candidates as Parquet per partition, registered as the warehouse table "
        "`exports.<program>` analysts can query.",
    )
    def warehouse_export(context: dg.AssetExecutionContext, offers, exports: ExportResource) -> dg.MaterializeResult:
        def one(window: PartitionWindow, offers: pa.Table) -> tuple[None, dict[str, Any]]:
            table = pipeline.export_table(program, offers, window.partition_key, _versions(offers))
            return None, {
                "dagster/row_count": table.num_rows,
                "path": exports.write_partition(g, window.partition_key, table),
            }

        meta = each_partition(context, parts, offers, one)[1]
        return dg.MaterializeResult(metadata={**meta, "table": exports.register(g)})

    stage_assets = [
        source_candidates,
        eligible_candidates,
        scored_candidates,
        offers,
        stored_candidates,
        warehouse_export,
    ]
    job = dg.define_asset_job(
        name=f"{g}_batch",
        partitions_def=parts,
        tags=tags,
        # The stages, then the touch plan the delivery builds from the offers (engage_assets/delivery).
        selection=dg.AssetSelection.assets(*stage_assets) | dg.AssetSelection.assets(dg.AssetKey([g, "touch_plan"])),
        description=f"{program.programName}: source → filters → scores → offers → store → export → touch plan, "
        "one partition (or a range).",
    )
    schedule = dg.build_schedule_from_partitioned_job(job, name=f"{g}_schedule")
    return ProgramDefs(
        assets=[*model_assets, *stage_assets],
        asset_checks=[],
        jobs=[job],
        schedules=[schedule],
        model_keys=model_keys,
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
        store.put_cached_scores(namespace, {keys[i]: float(s) for i, s in zip(miss_idx, fresh, strict=False)}, expires)
    return scores, int(len(hit_idx))
