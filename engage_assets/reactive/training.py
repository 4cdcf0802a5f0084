"""The purchase-intent model, trained as the batch models are: `train_model` on its mart, promoted if improved.

The spec's config names only the model's endpoint and features; the platform trains it on
`marts.training_cart_outcomes` (the carts of the past whose 7-day window closed, the features defined as the carts
mart and the decision path read them) with the label `purchased_within_7d` and the synthetic data's
`true_purchase_prob` for judging, unless the config names its own `trainingTable`, `label` and `truthColumn`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engage_assets.domain.config import ReactiveProgram, ScoringModelBase
from engage_assets.domain.models import ModelRef, ModelRegistry
from resources.scoring.training_data import read_training_frame
from resources.warehouse.base import WarehouseResource

if TYPE_CHECKING:
    from engage_assets.domain.models import TrainedModel

TRAINING_TABLE = "training_cart_outcomes"
LABEL = "purchased_within_7d"
TRUTH = "true_purchase_prob"


def intent_model(program: ReactiveProgram) -> ScoringModelBase:
    """The model the decision path scores with: the program's first."""
    return program.scoringModels[0]


def training_source(program: ReactiveProgram) -> tuple[str, str, str | None]:
    """(training table, label, truth column) of the purchase-intent model: the config's, else the carts mart's."""
    spec = intent_model(program)
    table = spec.trainingTable or TRAINING_TABLE
    label = spec.label or LABEL
    truth = spec.truthColumn if spec.trainingTable else (spec.truthColumn or TRUTH)
    return table, label, truth


def train_purchase_intent(
    program: ReactiveProgram, warehouse: WarehouseResource, registry: ModelRegistry
) -> tuple[TrainedModel, ModelRef]:
    """Train a candidate version, let the registry promote it if it beats the baseline and the current one;
    (candidate, current).  LookupError when no version was ever promoted (the last candidate's verdict says why)."""
    # Imported here: training loads sklearn (~1 s), which the decision runs (`current_intent_model`) never need.
    from engage_assets.domain.models import train_model

    spec = intent_model(program)
    table, label, truth = training_source(program)
    data, truth = read_training_frame(warehouse, table, spec.features, label, truth)
    trained = train_model(spec.modelId, program.programId, spec.features, data, label, truth_column=truth)
    registry.promote_if_improved(trained)
    return trained, current_intent_model(program, registry)


def current_intent_model(program: ReactiveProgram, registry: ModelRegistry) -> ModelRef:
    """The promoted purchase-intent version; a clear error when there is none (never trained, or never promoted)."""
    spec = intent_model(program)
    ref = registry.current(program.programId, spec.modelId, spec.endpoint)
    if ref is None:
        raise LookupError(f"{registry.never_promoted_reason(program.programId, spec.modelId)}: nothing to score with")
    return ref
