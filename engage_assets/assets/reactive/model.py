"""`[group, "<model>_model"]` of a reactive program: the purchase-intent model, trained on
`marts.training_cart_outcomes` (`engage_assets.reactive.training`) and promoted only if it beats the current version.
The decision stages score with the promoted version; the `model_retraining` job retrains it with the batch models."""

import dagster as dg

from engage_assets.assets.keys import WAREHOUSE_POOL, mart_asset_key
from engage_assets.assets.program.model import decision_metadata, retrain_model
from engage_assets.assets.reactive.names import intent_model_key
from engage_assets.domain.config import ReactiveProgram
from engage_assets.reactive.training import intent_model, training_source
from resources.scoring.deploy import ModelDeployResource
from resources.staging import ModelStoreResource
from resources.warehouse.base import WarehouseResource


def intent_model_asset(program: ReactiveProgram) -> dg.AssetsDefinition:
    """The purchase-intent model asset of a reactive program."""
    spec = intent_model(program)
    table, label, truth = training_source(program)

    @dg.asset(
        key=intent_model_key(program),
        group_name=program.group,
        deps=[mart_asset_key(table)],
        pool=WAREHOUSE_POOL,
        kinds={"scikit-learn"},
        tags={"engage/program": program.programId},
        description=f"{spec.modelId}: the purchase intent of an abandoned cart, trained on `{table}`, evaluated on "
        "a 20 % holdout; promoted only if it beats a naive one-feature baseline and the current version (deploy if "
        "improved); the decision and its metrics are recorded here and in the registry.",
    )
    def intent_model_version(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        models: ModelStoreResource,
        model_deploy: ModelDeployResource,
    ) -> dg.MaterializeResult:
        """Train a candidate version and let the registry decide whether it replaces the current one."""
        trained, record, current, deployed = retrain_model(
            program.programId, spec, table, label, truth, warehouse, models.registry(), model_deploy
        )
        context.log.info(f"{spec.modelId} {trained.version}: {record['reason']}")
        return dg.MaterializeResult(
            metadata={
                **decision_metadata(trained, record, current),
                "training_rows": record["training_rows"],
                **{f"deployed/{k}": v for k, v in deployed.items()},
            }
        )

    return intent_model_version
