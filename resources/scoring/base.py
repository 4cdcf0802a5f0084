"""The scoring interface: run a trained model over a batch of feature rows.

`ModelRef` names one promoted model version (see `engage_assets.domain.models`).  Every implementation returns the
same numbers for the same rows: the trained pipeline parses raw values itself (see
`engage_assets.domain.models.coerce_features`), so an implementation only selects the model's columns
(`feature_frame`), scores them, and checks what came back (`check_probabilities`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import dagster as dg
import numpy as np
import pandas as pd

from engage_assets.domain.models import ModelRef


class ScoringError(RuntimeError):
    """A model could not score a batch (bad input, endpoint error, malformed response)."""


class ScoringResource(dg.ConfigurableResource, ABC):
    """Scores feature rows with a promoted model version."""

    @abstractmethod
    def score(self, model: ModelRef, features: pd.DataFrame) -> np.ndarray:
        """Probability in [0, 1] per row of `features` (columns = model.features, raw values)."""


def feature_frame(model: ModelRef, features: pd.DataFrame) -> pd.DataFrame:
    """The model's columns in its order; a missing column is a configuration error, named loudly."""
    missing = [c for c in model.features if c not in features.columns]
    if missing:
        raise KeyError(
            f"model {model.model_id}@{model.version} (program {model.program_id}) needs feature column(s) "
            f"{', '.join(repr(c) for c in missing)} that the input lacks; input columns: "
            f"{', '.join(map(str, features.columns))}"
        )
    if list(features.columns) == list(model.features):
        return features  # already the model's columns in its order (the event path selects them): no copy
    return features.loc[:, list(model.features)]


def check_probabilities(model: ModelRef, p: np.ndarray) -> np.ndarray:
    """The scores as float64, or a `ScoringError` if any is not a finite number in [0, 1]."""
    p = np.asarray(p, dtype="float64")
    if p.size and not (np.isfinite(p).all() and p.min() >= 0.0 and p.max() <= 1.0):
        raise ScoringError(f"model {model.model_id}@{model.version} returned values outside [0, 1]")
    return p
