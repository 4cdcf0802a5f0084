"""The program's models: `[group, "<model>_model"]` (train on the model's mart, evaluate on held-out rows, promote
only if it beats a naive one-feature baseline and the current version, deploy what is promoted), one retraining job
and schedule per model on its `retrainSchedule`, and the promoted versions the scored stage reads."""

from typing import Any

import dagster as dg

from engage_assets.assets.dbt import WAREHOUSE_POOL, mart_asset_key
from engage_assets.assets.program.common import model_asset_name, program_tags, stage_key
from engage_assets.domain.config import ProgramConfig, ScoringModel, ScoringModelBase
from engage_assets.domain.models import ModelRef, ModelRegistry, TrainedModel, train_model
from resources.scoring.deploy import ModelDeployResource
from resources.scoring.training_data import read_training_frame
from resources.staging import ModelStoreResource
from resources.warehouse.base import WarehouseResource

BATCH_RETRAIN_CRON = "0 3 * * 1#1"  # the spec's "1st Mon 3:00 AM" when a model names no retrainSchedule


def model_keys(program: ProgramConfig) -> list[dg.AssetKey]:
    """The keys of the program's model assets, in config order."""
    return [stage_key(program, model_asset_name(m.modelId)) for m in program.scoringModels]


def decision_metadata(trained: TrainedModel, record: dict[str, Any], current: ModelRef | None) -> dict[str, Any]:
    """A training run's asset metadata: the candidate, the decision with its reason, the naive baseline, every
    holdout metric (`holdout/<name>`; `holdout/truth_auc_*` only when the table has the hidden truth)."""
    return {
        "version": trained.version,
        "promoted": bool(record["promoted"]),
        "promotion_reason": str(record["reason"]),
        "current_version": current.version if current else "none (never promoted: scoring fails until one is)",
        "baseline_feature": trained.baseline_feature,
        **{f"holdout/{k}": float(v) for k, v in trained.metrics.items() if isinstance(v, (int, float))},
    }


def retrain_model(
    program_id: str,
    spec: ScoringModelBase,
    table: str,
    label: str,
    truth_column: str | None,
    warehouse: WarehouseResource,
    registry: ModelRegistry,
    deployer: ModelDeployResource,
) -> tuple[TrainedModel, dict[str, Any], ModelRef | None, dict[str, Any]]:
    """Train a candidate on `marts.<table>`, let the registry decide, deploy the current version when it changed.

    (candidate, decision record, current version, the deployment's metadata).
    """
    data, truth = read_training_frame(warehouse, table, spec.features, label, truth_column)
    trained = train_model(spec.modelId, program_id, spec.features, data, label, truth_column=truth)
    record = registry.decide(trained)
    current = registry.current(program_id, spec.modelId, endpoint=spec.endpoint)
    deployed = deployer.deploy(current) if record["promoted"] and current is not None else {}
    return trained, {**record, "training_rows": len(data)}, current, deployed


def model_asset(program: ProgramConfig, spec: ScoringModel) -> dg.AssetsDefinition:
    """One model of the program: trained on its mart, evaluated on held-out rows, promoted only if it beats a naive
    one-feature baseline and the current version; a promoted version is deployed to its endpoint."""

    @dg.asset(
        key=stage_key(program, model_asset_name(spec.modelId)),
        group_name=program.group,
        deps=[mart_asset_key(spec.trainingTable)],
        pool=WAREHOUSE_POOL,
        kinds={"scikit-learn"},
        tags=program_tags(program),
        description=f"{spec.modelId}: trained on `{spec.trainingTable}` to predict `{spec.label}`, evaluated on "
        "a 20 % holdout; promoted only if it beats a naive one-feature baseline and the current version (deploy "
        "if improved); the decision and its metrics are recorded here and in the registry.",
    )
    def model(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        models: ModelStoreResource,
        model_deploy: ModelDeployResource,
    ) -> dg.MaterializeResult:
        """Train a candidate version and let the registry decide whether it replaces the current one."""
        trained, record, current, deployed = retrain_model(
            program.programId,
            spec,
            spec.trainingTable,
            spec.label,
            spec.truthColumn,
            warehouse,
            models.registry(),
            model_deploy,
        )
        context.log.info(f"{spec.modelId} {trained.version}: {record['reason']}")
        return dg.MaterializeResult(
            metadata={
                **decision_metadata(trained, record, current),
                "training_rows": record["training_rows"],
                **{f"deployed/{k}": v for k, v in deployed.items()},
            }
        )

    return model


def retraining_job(
    group: str, program_id: str, spec: ScoringModelBase, key: dg.AssetKey, default_cron: str, enabled: bool
) -> tuple[Any, dg.ScheduleDefinition]:
    """`<group>_<model>_retraining` (the model's asset) and its schedule on the model's `retrainSchedule` (UTC),
    running by default when the program is enabled."""
    cron = spec.retrainSchedule or default_cron
    job = dg.define_asset_job(
        f"{group}_{key.path[-1].removesuffix('_model')}_retraining",
        selection=dg.AssetSelection.assets(key),
        tags={"engage/program": program_id},
        description=f"Retrain {spec.modelId} ({cron}, UTC): evaluated on held-out rows, promoted only if it beats "
        "a naive one-feature baseline and the current version.",
    )
    status = dg.DefaultScheduleStatus.RUNNING if enabled else dg.DefaultScheduleStatus.STOPPED
    schedule = dg.ScheduleDefinition(
        name=f"{job.name}_schedule", job=job, cron_schedule=cron, execution_timezone="UTC", default_status=status
    )
    return job, schedule


def retraining_jobs(program: ProgramConfig) -> list[tuple[Any, dg.ScheduleDefinition]]:
    """One retraining job and schedule per model of a batch program (default: the first Monday, 03:00 UTC)."""
    return [
        retraining_job(
            program.group,
            program.programId,
            spec,
            stage_key(program, model_asset_name(spec.modelId)),
            BATCH_RETRAIN_CRON,
            program.enabled,
        )
        for spec in program.scoringModels
    ]


def promoted_refs(program: ProgramConfig, registry: ModelRegistry) -> dict[str, ModelRef]:
    """{model_id: promoted version} for every model of the program; a model never promoted fails the run."""
    refs = {}
    for spec in program.scoringModels:
        ref = registry.current(program.programId, spec.modelId, endpoint=spec.endpoint)
        if ref is None:
            raise dg.Failure(
                description=f"model {spec.modelId!r} has no promoted version, so nothing is scored with it (no "
                f"fallback: an unvetted score would decide offers). {registry.never_promoted_reason(program.programId, spec.modelId)}. "
                f"Materialize {stage_key(program, model_asset_name(spec.modelId)).to_user_string()} once the "
                "training table supports a model that beats the baseline, or roll back: `engage model rollback`."
            )
        refs[spec.modelId] = ref
    return refs
