"""The model pipeline, training on a canonical split, holdout evaluation and the content-addressed version.

Why logistic regression: the labelled history is drawn from a process that is logistic in the features, so LR is
the well-specified model (its maximum-likelihood probabilities are calibrated without a separate calibration
step), and scoring is one small matrix-vector product, which keeps 500,000 rows well under a second.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from engage_assets.domain.models.evaluation import (
    Baseline,
    auc_vs_truth,
    one_feature_baseline,
    paired_auc_test,
    score_reference,
)
from engage_assets.domain.models.features import as_float, coerce_features, infer_categorical
from engage_assets.domain.models.onehot import OneHot
from engage_assets.domain.models.registry import content_version


def build_pipeline(features: list[str], categorical: list[str], *, C: float = 1.0) -> Pipeline:
    """coerce -> (numeric: median-impute + missing flags + standardize | categorical: one-hot) -> logistic reg.

    Unknown categories at scoring time get an all-zero one-hot row (handle_unknown="ignore") rather than an
    error, because a new `churn_reason` upstream must not stop a program's run.  Dense output: the feature
    count is small, and dense BLAS is the fastest predict path.
    """
    features = list(features)
    unknown = sorted(set(categorical) - set(features))
    if unknown:
        raise ValueError(f"categorical feature(s) not in features: {unknown}")
    categorical = [c for c in features if c in set(categorical)]
    numeric = [f for f in features if f not in set(categorical)]
    transformers: list[tuple[str, object, list[str]]] = []
    if numeric:
        scale = Pipeline(
            [("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())]
        )
        transformers.append(("num", scale, numeric))
    if categorical:
        transformers.append(("cat", OneHot(handle_unknown="ignore"), categorical))
    coerce = FunctionTransformer(
        coerce_features, kw_args={"features": features, "categorical": categorical}, validate=False
    )
    return Pipeline(
        [
            ("coerce", coerce),
            ("features", ColumnTransformer(transformers, remainder="drop")),
            ("classifier", LogisticRegression(C=C, max_iter=1000)),
        ]
    )


@dataclass
class Holdout:
    """The evaluation rows kept in memory so an incumbent can be judged on exactly the same rows."""

    X: pd.DataFrame
    y: np.ndarray
    truth: np.ndarray | None = None


@dataclass
class TrainedModel:
    """A fitted candidate: its version, pipeline, holdout metrics and the exact artifact bytes."""

    model_id: str
    program_id: str
    version: str  # sha256(artifact bytes + feature list)[:16]
    pipeline: Pipeline
    metrics: dict[str, float]
    features: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    label: str = ""
    artifact: bytes = field(default=b"", repr=False)  # exactly the bytes written to model.joblib
    holdout: Holdout | None = field(default=None, repr=False)  # not persisted
    baseline_feature: str = ""  # the naive one-feature baseline's feature (`evaluation.one_feature_baseline`)
    score_reference: dict[str, list[float]] = field(default_factory=dict, repr=False)  # training scores, for PSI


def evaluate(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, truth: np.ndarray | None = None) -> dict[str, float]:
    """Holdout metrics; `truth_mae` is the mean |p_hat - p_true| when the generating probability is known."""
    p = pipeline.predict_proba(X)[:, 1]
    y = np.asarray(y, dtype=int)
    metrics: dict[str, float] = {
        "roc_auc": float(roc_auc_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "positive_rate": float(y.mean()),
        "mean_predicted": float(p.mean()),
        "n_holdout": int(len(y)),
    }
    if truth is not None:
        truth = np.asarray(truth, dtype="float64")
        metrics["truth_mae"] = float(np.mean(np.abs(p - truth)))
        metrics["truth_roc_auc"] = float(roc_auc_score(y, truth))  # the ceiling any model could reach here
    return metrics


def baseline_metrics(pipeline: Pipeline, holdout: Holdout, baseline: Baseline) -> dict[str, float]:
    """The candidate against the naive baseline on the holdout (the gain and its DeLong standard error), and, when
    the hidden truth is known, the model's, the baseline's and the truth's own AUC against it."""
    p_hold = pipeline.predict_proba(holdout.X)[:, 1]
    gain, se = paired_auc_test(holdout.y, p_hold, baseline.scores)
    out = {"baseline_roc_auc": baseline.roc_auc, "baseline_gain": gain, "baseline_gain_se": se}
    if holdout.truth is not None:
        out["truth_auc_model"] = auc_vs_truth(p_hold, holdout.truth)
        out["truth_auc_baseline"] = auc_vs_truth(baseline.scores, holdout.truth)
        out["truth_auc_ceiling"] = auc_vs_truth(holdout.truth, holdout.truth)
    return out


def serialize(pipeline: Pipeline) -> bytes:
    """The joblib bytes of a pipeline (what model.joblib holds and the version hashes)."""
    buf = io.BytesIO()
    joblib.dump(pipeline, buf)
    return buf.getvalue()


def _label_array(col: pd.Series, label: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        y = col.to_numpy(dtype="float64", na_value=np.nan)
    else:
        y = as_float(col, label)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"label {label!r} must be boolean or 0/1")
    return y.astype(int)


def _check_columns(
    model_id: str, features: list[str], training: pd.DataFrame, label: str, truth_column: str | None
) -> None:
    if not features:
        raise ValueError(f"{model_id}: no features")
    absent = [c for c in [*features, label, *([truth_column] if truth_column else [])] if c not in training.columns]
    if absent:
        raise KeyError(f"{model_id}: training frame lacks column(s): {', '.join(absent)}")
    if label in features or (truth_column and truth_column in features):
        raise ValueError(f"{model_id}: the label / truth column cannot be a feature")


def canonical_rows(training: pd.DataFrame, features: list[str], label: str, truth_column: str | None) -> pd.DataFrame:
    """The labelled rows in a canonical order (by a hash of their feature/label values).

    A warehouse query without ORDER BY returns rows in any order: the same data and seed must give the same split,
    the same coefficients and therefore the same version, however the rows arrived.
    """
    cols = [*features, label, *([truth_column] if truth_column else [])]
    frame = training.loc[training[label].notna(), cols]
    # The truth column is left out of the ordering key so that passing it cannot change the model or version.
    key = pd.util.hash_pandas_object(frame[[*features, label]], index=False).to_numpy()
    order = np.argsort(key, kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def train_model(
    model_id: str,
    program_id: str,
    features: Sequence[str],
    training: pd.DataFrame,
    label: str,
    seed: int = 0,
    *,
    truth_column: str | None = None,
    categorical: Sequence[str] | None = None,
    holdout_fraction: float = 0.2,
    C: float = 1.0,
) -> TrainedModel:
    """Fit on a stratified 80/20 split of `training` (rows in `canonical_rows` order), evaluate on the 20 %,
    return the versioned model.  Rows without a label are dropped (they are outcomes not yet known).

    The holdout metrics include the naive one-feature baseline's AUC and the candidate's gain over it with its
    standard error (what the registry's promotion gate reads), and, only when `truth_column` is given, the AUCs
    against the hidden truth (`evaluation.auc_vs_truth`): the truth is never needed to train."""
    features = [str(f) for f in features]
    _check_columns(model_id, features, training, label, truth_column)
    cat = list(categorical) if categorical is not None else infer_categorical(training, features)
    frame = canonical_rows(training, features, label, truth_column)
    y = _label_array(frame[label], label)
    if len(y) < 10 or min(y.sum(), len(y) - y.sum()) < 2:
        raise ValueError(f"{model_id}: need at least 10 labelled rows and 2 of each class, got {len(y)} rows")

    idx_train, idx_hold = train_test_split(
        np.arange(len(frame)), test_size=holdout_fraction, stratify=y, random_state=seed
    )
    X = frame[features]
    pipeline = build_pipeline(features, cat, C=C)
    pipeline.fit(X.iloc[idx_train], y[idx_train])

    truth = frame[truth_column].to_numpy(dtype="float64")[idx_hold] if truth_column else None
    holdout = Holdout(X=X.iloc[idx_hold].reset_index(drop=True), y=y[idx_hold], truth=truth)
    metrics = evaluate(pipeline, holdout.X, holdout.y, truth)
    metrics["n_train"] = int(len(idx_train))
    baseline = one_feature_baseline(X.iloc[idx_train], y[idx_train], holdout.X, holdout.y, features, cat)
    metrics.update(baseline_metrics(pipeline, holdout, baseline))
    reference = score_reference(pipeline.predict_proba(X.iloc[idx_train])[:, 1])

    artifact = serialize(pipeline)
    return TrainedModel(
        model_id=model_id,
        program_id=program_id,
        version=content_version(artifact, features),
        pipeline=pipeline,
        metrics=metrics,
        features=tuple(features),
        categorical=tuple(cat),
        label=label,
        artifact=artifact,
        holdout=holdout,
        baseline_feature=baseline.feature,
        score_reference=reference,
    )
