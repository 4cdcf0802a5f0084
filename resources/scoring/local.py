"""Local scoring: in-process, with the artifact the platform trained."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engage_assets.domain.models import ModelRef, load_pipeline
from resources.scoring.base import ScoringError, ScoringResource, check_probabilities, feature_frame


class LocalScoringResource(ScoringResource):
    """Scores in-process with the artifact the platform trained (cached per version).

    Large inputs are scored in chunks so memory stays bounded (the dense design matrix of 10M rows would
    otherwise be allocated at once); the chunk size does not change the results.
    """

    chunk_rows: int = 1_000_000

    def score(self, model: ModelRef, features: pd.DataFrame) -> np.ndarray:
        """Score chunk by chunk with the model's trained pipeline."""
        X = feature_frame(model, features)
        n = len(X)
        out = np.empty(n, dtype="float64")
        if n == 0:
            return out
        pipeline = load_pipeline(model)
        step = max(1, int(self.chunk_rows))
        for start in range(0, n, step):
            chunk = X.iloc[start : start + step]
            try:
                out[start : start + len(chunk)] = pipeline.predict_proba(chunk)[:, 1]
            except (ValueError, KeyError) as exc:
                raise ScoringError(f"model {model.model_id}@{model.version} cannot score the input: {exc}") from exc
        return check_probabilities(model, out)
