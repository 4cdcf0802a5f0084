"""The purchase-intent model, trained as the batch models are: `train_model` on its mart, promoted if improved.

The spec's config names only the model's endpoint and features; the platform trains it on
`marts.training_cart_outcomes` (the carts of the past whose 7-day window closed, the features defined as the carts
mart and the decision path read them) with the label `purchased_within_7d` and the synthetic data's
`true_purchase_prob` for judging, unless the config names its own `trainingTable`, `label` and `truthColumn`.
"""

from __future__ import annotations

from engage_assets.domain.config import ReactiveProgram, ScoringModelBase
from engage_assets.domain.models import ModelRef, ModelRegistry, TrainedModel, train_model
from resources.warehouse.base import WarehouseResource

TRAINING_TABLE = "training_cart_outcomes"
LABEL = "purchased_within_7d"
TRUTH = "true_purchase_prob"


def intent_model(program: ReactiveProgram) -> ScoringModelBase:
    """The model the decision path scores with: the program's first."""
    return program.scoringModels[0]


def train_purchase_intent(
    program: ReactiveProgram, warehouse: WarehouseResource, registry: ModelRegistry
) -> tuple[TrainedModel, ModelRef]:
    """Train a candidate version, let the registry promote it if it beats the current one; (candidate, current)."""
    spec = intent_model(program)
    table = spec.trainingTable or TRAINING_TABLE
    label = spec.label or LABEL
    truth = spec.truthColumn if spec.trainingTable else (spec.truthColumn or TRUTH)
    columns = list(dict.fromkeys([*spec.features, label, *([truth] if truth else [])]))
    data = warehouse.query_arrow(f"SELECT {', '.join(columns)} FROM marts.{table}").to_pandas()
    trained = train_model(spec.modelId, program.programId, spec.features, data, label, truth_column=truth)
    registry.promote_if_improved(trained)
    current = registry.current(program.programId, spec.modelId, spec.endpoint)
    if current is None:  # pragma: no cover - the first model is always promoted
        raise RuntimeError(f"{spec.modelId}: no promoted version after training")
    return trained, current


def current_intent_model(program: ReactiveProgram, registry: ModelRegistry) -> ModelRef:
    """The promoted purchase-intent version; a clear error before the first training."""
    spec = intent_model(program)
    ref = registry.current(program.programId, spec.modelId, spec.endpoint)
    if ref is None:
        raise LookupError(f"{program.programId}/{spec.modelId} has no promoted version: train it first")
    return ref
