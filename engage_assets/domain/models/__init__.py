"""Model training, evaluation and the file-system model registry (ARCHITECTURE.md §6).

Pure functions and plain classes, no Dagster: the assets call them, tests call them directly, and the SageMaker
stand-in (`engage_assets.demo.sagemaker_endpoint`) loads what they write.

- `features`: feature typing and coercion, the one-hot encoder (the first steps of the pickled pipeline);
- `training`: the pipeline (logistic regression), training on a canonical split, evaluation, the version hash;
- `evaluation`: the naive one-feature baseline, the paired AUC test, AUC against the hidden truth, PSI;
- `registry`: `ModelRegistry` (save, promote if improved, history, rollback) and `load_pipeline` (cached, verified).

Why the pipeline starts with a coercion step: scores must be identical whether rows arrive as a DataFrame
(local scoring) or as CSV text (the SageMaker protocol).  Putting the raw-value -> typed-value conversion inside
the pickled pipeline makes the artifact self-contained, so both paths run exactly the same code.

`coerce_features` and `OneHot` must stay importable from this package: the pickled artifacts name them as
`engage_assets.domain.models.<name>` (see `features.PICKLED_AS`).
"""

import importlib
import sys
from typing import TYPE_CHECKING, Any

from engage_assets.domain.models.evaluation import auc_vs_truth, psi, score_reference
from engage_assets.domain.models.features import MISSING_CATEGORY, coerce_features, infer_categorical
from engage_assets.domain.models.registry import (
    BASELINE_Z,
    LOWER_IS_BETTER,
    ModelRef,
    ModelRegistry,
    content_version,
    load_pipeline,
)

if TYPE_CHECKING:
    from engage_assets.domain.models.onehot import OneHot
    from engage_assets.domain.models.training import Holdout, TrainedModel, build_pipeline, evaluate, train_model

# What needs sklearn loads when first named (PEP 562): importing sklearn costs ~1 s, and the decision path reaches
# this package (`ModelRef`, the registry, `linear.json`) without training or unpickling anything.  Unpickling an
# artifact names `engage_assets.domain.models.OneHot`, which loads it then.
_LAZY = {
    "OneHot": "engage_assets.domain.models.onehot",
    **dict.fromkeys(
        ("Holdout", "TrainedModel", "build_pipeline", "evaluate", "train_model"), "engage_assets.domain.models.training"
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


# Artifacts trained before this code moved into engage_assets.domain name their classes `engage_assets.models.<name>`
# in the pickle; the alias lets the registry keep loading those promoted models (and compare new ones against them).
sys.modules.setdefault("engage_assets.models", sys.modules[__name__])

__all__ = [
    "BASELINE_Z",
    "LOWER_IS_BETTER",
    "MISSING_CATEGORY",
    "Holdout",
    "ModelRef",
    "ModelRegistry",
    "OneHot",
    "TrainedModel",
    "auc_vs_truth",
    "build_pipeline",
    "coerce_features",
    "content_version",
    "evaluate",
    "infer_categorical",
    "load_pipeline",
    "psi",
    "score_reference",
    "train_model",
]
