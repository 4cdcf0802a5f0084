"""The platform's trained pipeline as plain NumPy: the same numbers as `predict_proba`, without sklearn's per-call
overhead.

Every model the platform trains is `build_pipeline`'s shape: coerce → (numeric: median impute with missing flags,
standardize | categorical: one-hot) → logistic regression.  Scoring one row through sklearn costs 3-5 ms, nearly all
of it per-call validation (feature names, dtypes, `check_array` in each step, a joblib dispatch in the column
transformer); the arithmetic is a few hundred nanoseconds.  The event path decides one cart in a 20 ms budget, so
`compile_linear` reads the fitted parameters once and scores with them directly:

    p = expit(standardize(impute(x) ++ missing_flags(x)) · w_num + onehot(c) · w_cat + b)

Inputs are coerced exactly as the pipeline's own first step does (`as_float` per numeric feature; the categorical
ones through `coerce_features` and the fitted `OneHot`), so a value the pipeline refuses is refused here too.  A
pipeline of any other shape (or settings this does not reproduce) compiles to None and is scored by sklearn.  The
results equal `predict_proba`'s to the last few bits (the dot product sums in another order; the decision path
rounds scores to 1e-9), which the tests check on the trained models.

The parameters are also an artifact of their own, `linear.json` beside `model.joblib` (`ModelRegistry.save` writes
it for every pipeline that compiles): `load_linear` scores a promoted version without unpickling it, so without
importing sklearn (~1 s of a decision run's start, `engage_assets.reactive_location`).  The file names its version
and hashes its parameters; a version saved before it existed has none and is scored from the pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from engage_assets.domain.models.features import as_float, coerce_features, onehot_encode


@dataclass(frozen=True)
class LinearScorer:
    """A fitted `build_pipeline` pipeline's parameters: numeric block, categorical block, logistic weights."""

    numeric: tuple[str, ...]
    medians: np.ndarray  # per numeric feature
    flagged: np.ndarray  # indices (into `numeric`) of the features with a missing-value indicator column
    mean: np.ndarray  # the scaler's, over imputed ++ flags (zeros where it did not centre)
    scale: np.ndarray  # the scaler's (ones where it did not scale)
    categorical: tuple[str, ...]
    categories: tuple[np.ndarray, ...] | None  # the fitted `OneHot`'s, per categorical feature (None: no such block)
    coef_t: np.ndarray  # (width, 1): numeric block then categorical block, as the column transformer stacks them
    intercept: np.ndarray  # (1,)

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """P(class 1) per row of `X` (raw values, the model's columns), computed as sklearn computes it: the design
        matrix stacked as the column transformer stacks it, one matrix product, `expit`."""
        n = len(X)
        blocks = []
        if self.numeric:
            raw = np.column_stack([as_float(X[f], f) for f in self.numeric]) if n else np.zeros((0, len(self.numeric)))
            missing = np.isnan(raw)
            block = np.hstack([np.where(missing, self.medians, raw), missing[:, self.flagged].astype("float64")])
            if len(self.flagged):  # the imputer's output is column-major then (BLAS's sum order follows the layout)
                block = np.asfortranarray(block)
            block -= self.mean
            block /= self.scale
            blocks.append(block)
        if self.categories is not None:
            blocks.append(onehot_encode(coerce_features(X, self.categorical, self.categorical), self.categories))
        design = blocks[0] if len(blocks) == 1 else np.hstack(blocks)
        return np.asarray(expit((design @ self.coef_t + self.intercept).reshape(-1)), dtype="float64")


def _numeric_block(step: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(medians, flagged, mean, scale) of a fitted impute → scale pipeline, or None if it is another shape."""
    # sklearn here, not at the top: the decision path imports this module to score from `linear.json` (module doc).
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not (isinstance(step, Pipeline) and [type(s) for _, s in step.steps] == [SimpleImputer, StandardScaler]):
        return None
    imputer, scaler = step.steps[0][1], step.steps[1][1]
    stats = np.asarray(imputer.statistics_, dtype="float64")
    indicator = getattr(imputer, "indicator_", None)
    if (
        imputer.strategy != "median"
        or not (
            imputer.missing_values is np.nan
            or (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values))
        )
        or np.isnan(stats).any()  # an all-missing column is dropped by sklearn: not reproduced here
        or (imputer.add_indicator and (indicator is None or indicator.features != "missing-only"))
    ):
        return None
    flagged = np.asarray(indicator.features_ if imputer.add_indicator and indicator is not None else [], dtype=np.int64)
    width = len(stats) + len(flagged)
    mean = np.asarray(scaler.mean_, dtype="float64") if scaler.with_mean else np.zeros(width)
    scale = np.asarray(scaler.scale_, dtype="float64") if scaler.with_std else np.ones(width)
    if mean.shape != (width,) or scale.shape != (width,):
        return None
    return stats, flagged, mean, scale


def compile_linear(pipeline: Any) -> LinearScorer | None:  # long: one shape check per fitted step, in order
    """The pipeline's parameters as a `LinearScorer`, or None for any pipeline `build_pipeline` did not make."""
    # sklearn here, not at the top: the decision path imports this module to score from `linear.json` (module doc).
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from engage_assets.domain.models.onehot import OneHot

    if not (
        isinstance(pipeline, Pipeline) and [name for name, _ in pipeline.steps] == ["coerce", "features", "classifier"]
    ):
        return None
    coerce, columns, clf = (step for _, step in pipeline.steps)
    if not (isinstance(coerce, FunctionTransformer) and coerce.func is coerce_features):
        return None
    if not (isinstance(columns, ColumnTransformer) and isinstance(clf, LogisticRegression)):
        return None
    if len(clf.classes_) != 2 or clf.coef_.shape[0] != 1:
        return None
    numeric: Sequence[str] = ()
    categorical: Sequence[str] = ()
    block = None
    onehot = None
    for name, step, cols in columns.transformers_:
        if name == "remainder":
            if step != "drop":
                return None
        elif name == "num" and numeric == () and onehot is None:
            block, numeric = _numeric_block(step), tuple(cols)
            if block is None:
                return None
        elif name == "cat" and isinstance(step, OneHot) and onehot is None:
            onehot, categorical = step, tuple(cols)
        else:
            return None
    coef_t = np.asarray(clf.coef_, dtype="float64").T
    medians, flagged, mean, scale = (
        block if block is not None else (np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.ones(0))
    )
    width = len(mean) + (sum(len(c) for c in onehot.categories_) if onehot is not None else 0)
    if coef_t.shape != (width, 1):
        return None
    return LinearScorer(
        numeric=tuple(numeric),
        medians=medians,
        flagged=flagged,
        mean=mean,
        scale=scale,
        categorical=tuple(categorical),
        categories=tuple(onehot.categories_) if onehot is not None else None,
        coef_t=coef_t,
        intercept=np.asarray(clf.intercept_, dtype="float64"),
    )


_COMPILED: dict[int, tuple[Any, LinearScorer | None]] = {}
_LOCK = threading.Lock()


def linear_scorer(pipeline: Any) -> LinearScorer | None:
    """`compile_linear(pipeline)`, once per pipeline object (`load_pipeline` keeps one per model version)."""
    key = id(pipeline)
    with _LOCK:
        hit = _COMPILED.get(key)
        if hit is not None and hit[0] is pipeline:
            return hit[1]
    scorer = compile_linear(pipeline)
    with _LOCK:
        if len(_COMPILED) >= 64:
            _COMPILED.clear()
        _COMPILED[key] = (pipeline, scorer)
    return scorer


LINEAR_ARTIFACT = "linear.json"  # beside model.joblib


def _params(scorer: LinearScorer) -> dict[str, Any]:
    """The scorer's parameters as JSON values (a float's repr reads back as the same float: exact)."""
    return {
        "numeric": list(scorer.numeric),
        "medians": scorer.medians.tolist(),
        "flagged": scorer.flagged.tolist(),
        "mean": scorer.mean.tolist(),
        "scale": scorer.scale.tolist(),
        "categorical": list(scorer.categorical),
        "categories": [[str(v) for v in c] for c in scorer.categories] if scorer.categories is not None else None,
        "coef": scorer.coef_t.reshape(-1).tolist(),
        "intercept": scorer.intercept.tolist(),
    }


def _digest(version: str, params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([version, params], sort_keys=True).encode()).hexdigest()


def linear_artifact(scorer: LinearScorer, version: str) -> bytes:
    """`linear.json` of a model version: its version, the parameters and their hash (with the version)."""
    params = _params(scorer)
    return json.dumps({"version": version, "params": params, "sha256": _digest(version, params)}).encode()


def read_linear_artifact(data: bytes, version: str) -> LinearScorer:
    """The scorer of a `linear.json`; ValueError when it is another version's or its parameters do not hash."""
    try:
        doc = json.loads(data)
        params = doc["params"]
        if doc["version"] != version:
            raise ValueError(f"it is version {doc['version']}'s")
        if doc["sha256"] != _digest(version, params):
            raise ValueError("its parameters do not match their hash")
        cats = params["categories"]
        return LinearScorer(
            numeric=tuple(params["numeric"]),
            medians=np.asarray(params["medians"], dtype="float64"),
            flagged=np.asarray(params["flagged"], dtype=np.int64),
            mean=np.asarray(params["mean"], dtype="float64"),
            scale=np.asarray(params["scale"], dtype="float64"),
            categorical=tuple(params["categorical"]),
            categories=tuple(np.array(c, dtype=object) for c in cats) if cats is not None else None,
            coef_t=np.asarray(params["coef"], dtype="float64").reshape(-1, 1),
            intercept=np.asarray(params["intercept"], dtype="float64"),
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a linear scorer artifact: {exc!r}") from exc


_LOADED: dict[tuple[str, str], LinearScorer | None] = {}


def load_linear(artifact_path: str, version: str) -> LinearScorer | None:
    """The `linear.json` beside a version's `model.joblib` (cached per file and version), or None when the version
    has none (saved before it existed, or a pipeline that does not compile): score it from the pickle then.  A file
    of another version, or whose parameters do not match their hash, raises ValueError (never scored silently)."""
    path = Path(artifact_path).with_name(LINEAR_ARTIFACT)
    key = (os.path.realpath(path), version)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None  # not cached: a later save may write it
    try:
        scorer = read_linear_artifact(data, version)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    with _LOCK:
        if len(_LOADED) >= 64:
            _LOADED.clear()
        _LOADED[key] = scorer
    return scorer
