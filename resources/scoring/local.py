"""Local scoring: in-process, with the artifact the platform trained."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from engage_assets.domain.models import ModelRef, load_pipeline
from engage_assets.domain.models.linear import linear_scorer, load_linear
from resources.scoring.base import ScoringError, ScoringResource, check_probabilities, feature_frame


class LocalScoringResource(ScoringResource):
    """Scores in-process with the artifact the platform trained (cached per version).

    Large inputs are scored in chunks so memory stays bounded (the dense design matrix of 10M rows would
    otherwise be allocated at once); the chunk size does not change the results.  A pipeline of the platform's own
    shape is scored with its parameters in NumPy (`engage_assets.domain.models.linear`, read from the version's
    `linear.json` or compiled from the pickle: the same numbers without sklearn's per-call validation, milliseconds
    on the event path's single rows); any other through `predict_proba`.
    """

    chunk_rows: int = 1_000_000

    def score(self, model: ModelRef, features: pd.DataFrame) -> np.ndarray:
        """Score chunk by chunk with the model's trained pipeline."""
        X = feature_frame(model, features)
        n = len(X)
        out = np.empty(n, dtype="float64")
        if n == 0:
            return out
        predict = _predictor(model)
        step = max(1, int(self.chunk_rows))
        for start in range(0, n, step):
            chunk = X.iloc[start : start + step]
            try:
                out[start : start + len(chunk)] = predict(chunk)
            except (ValueError, KeyError) as exc:
                raise ScoringError(f"model {model.model_id}@{model.version} cannot score the input: {exc}") from exc
        return check_probabilities(model, out)


def _predictor(model: ModelRef) -> Callable[[pd.DataFrame], np.ndarray]:
    """P(class 1) per row: the version's `linear.json` when it has one (no unpickling, so no sklearn to import: the
    decision runs start faster), else the compiled linear scorer where the pipeline has the platform's shape, else
    sklearn's `predict_proba`."""
    saved = load_linear(model.artifact_path, model.version)
    if saved is not None:
        return saved.score
    pipeline = load_pipeline(model)
    scorer = linear_scorer(pipeline)
    if scorer is not None:
        return scorer.score
    return lambda chunk: pipeline.predict_proba(chunk)[:, 1]
