"""`[group, "<model>_model"]` of a reactive program: the purchase-intent model, trained on
`marts.training_cart_outcomes` (`engage_assets.reactive.training`) and promoted only if it beats the current version.
The decision stages score with the promoted version; the `model_retraining` job retrains it with the batch models."""

import dagster as dg

from engage_assets.assets.dbt import WAREHOUSE_POOL, mart_asset_key
from engage_assets.assets.program import model_asset_name
from engage_assets.domain.config import ReactiveProgram
from engage_assets.reactive.training import TRAINING_TABLE, intent_model, train_purchase_intent
from resources.staging import ModelStoreResource
from resources.warehouse.base import WarehouseResource


def intent_model_key(program: ReactiveProgram) -> dg.AssetKey:
    """The key of the program's purchase-intent model asset, e.g. `abandoned_cart_recovery/purchase_intent_v4_model`."""
    return dg.AssetKey([program.group, model_asset_name(intent_model(program).modelId)])


def intent_model_asset(program: ReactiveProgram) -> dg.AssetsDefinition:
    """The purchase-intent model asset of a reactive program."""
    spec = intent_model(program)
    table = spec.trainingTable or TRAINING_TABLE

    @dg.asset(
        key=intent_model_key(program),
        group_name=program.group,
        deps=[mart_asset_key(table)],
        pool=WAREHOUSE_POOL,
        kinds={"scikit-learn"},
        tags={"engage/program": program.programId},
        description=f"{spec.modelId}: the purchase intent of an abandoned cart, trained on `{table}`; promoted "
        "only if it beats the current version on the holdout (deploy if improved).",
    )
    def intent_model_version(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, models: ModelStoreResource
    ) -> dg.MaterializeResult:
        """Train a candidate version and let the registry decide whether it replaces the current one."""
        trained, current = train_purchase_intent(program, warehouse, models.registry())
        promoted = current.version == trained.version
        context.log.info(f"{spec.modelId} {trained.version}: promoted={promoted}, current {current.version}")
        return dg.MaterializeResult(
            metadata={
                "version": trained.version,
                "promoted": promoted,
                "current_version": current.version,
                **{f"holdout/{k}": float(v) for k, v in trained.metrics.items() if isinstance(v, (int, float))},
            }
        )

    return intent_model_version
