"""The program's models: `[group, "<model>_model"]` (train on the model's mart, promote if improved), and the promoted
versions the scored stage reads."""

import dagster as dg

from engage_assets.assets.dbt import WAREHOUSE_POOL, mart_asset_key
from engage_assets.assets.program.common import model_asset_name, program_tags, stage_key
from engage_assets.domain.config import ProgramConfig, ScoringModel
from engage_assets.domain.models import ModelRef, ModelRegistry, train_model
from resources.staging import ModelStoreResource
from resources.warehouse.base import WarehouseResource


def model_keys(program: ProgramConfig) -> list[dg.AssetKey]:
    """The keys of the program's model assets, in config order."""
    return [stage_key(program, model_asset_name(m.modelId)) for m in program.scoringModels]


def model_asset(program: ProgramConfig, spec: ScoringModel) -> dg.AssetsDefinition:
    """One model of the program: trained on its mart, promoted only if it beats the current version."""

    @dg.asset(
        key=stage_key(program, model_asset_name(spec.modelId)),
        group_name=program.group,
        deps=[mart_asset_key(spec.trainingTable)],
        pool=WAREHOUSE_POOL,
        kinds={"scikit-learn"},
        tags=program_tags(program),
        description=f"{spec.modelId}: trained on `{spec.trainingTable}` to predict `{spec.label}`; "
        "promoted only if it beats the current version on the holdout (deploy if improved).",
    )
    def model(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, models: ModelStoreResource
    ) -> dg.MaterializeResult:
        """Train a candidate version and let the registry decide whether it replaces the current one."""
        columns = list(dict.fromkeys([*spec.features, spec.label] + ([spec.truthColumn] if spec.truthColumn else [])))
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

    return model


def promoted_refs(program: ProgramConfig, registry: ModelRegistry) -> dict[str, ModelRef]:
    """{model_id: promoted version} for every model of the program; a model never promoted fails the run."""
    refs = {}
    for spec in program.scoringModels:
        ref = registry.current(program.programId, spec.modelId, endpoint=spec.endpoint)
        if ref is None:
            raise dg.Failure(
                description=f"model {spec.modelId!r} has no promoted version yet: materialize "
                f"{stage_key(program, model_asset_name(spec.modelId)).to_user_string()} first"
            )
        refs[spec.modelId] = ref
    return refs
