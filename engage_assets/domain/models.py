"""Model training, evaluation and the file-system model registry (ARCHITECTURE.md §6).

Pure functions and plain classes, no Dagster: the assets call them, tests call them directly, and the SageMaker
stand-in (`engage_assets.demo.sagemaker_endpoint`) loads what they write.

Why logistic regression: the labelled history is drawn from a process that is logistic in the features, so LR is
the well-specified model (its maximum-likelihood probabilities are calibrated without a separate calibration
step), and scoring is one small matrix-vector product, which keeps 500,000 rows well under a second.

Why the pipeline starts with a coercion step: scores must be identical whether rows arrive as a DataFrame
(local scoring) or as CSV text (the SageMaker protocol).  Putting the raw-value -> typed-value conversion inside
the pickled pipeline makes the artifact self-contained, so both paths run exactly the same code.

Registry layout (content-addressed; nothing is ever overwritten):
    <root>/<program_id>/<model_id>/<version>/model.joblib   the serialized pipeline; version = hash of it
    <root>/<program_id>/<model_id>/<version>/metrics.json   features, holdout metrics, provenance
    <root>/<program_id>/<model_id>/current.json             pointer to the promoted version
    <root>/<program_id>/<model_id>/promotions.jsonl         every promotion decision, for audit
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler


@dataclass(frozen=True)
class ModelRef:
    model_id: str  # e.g. "churn-risk-v6"
    program_id: str  # models are trained per program: the same modelId may use other features elsewhere
    version: str  # content hash of the promoted artifact
    endpoint: str  # "sagemaker://churn-risk-v6"
    features: tuple[str, ...]
    artifact_path: str  # local path of the joblib artifact


MISSING_CATEGORY = "__missing__"
# Metrics where a smaller value is better; every other metric is "higher is better".
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "truth_mae"})
_TRUE = frozenset({"true", "t", "yes", "y"})
_FALSE = frozenset({"false", "f", "no", "n"})
_NULL_TEXT = frozenset({"", "nan", "none", "null", "na", "<na>"})


# --------------------------------------------------------------------------------------------------------------
# Feature typing and coercion (runs inside the pipeline)
# --------------------------------------------------------------------------------------------------------------


def infer_categorical(frame: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """Features whose training values are text (object/string/category dtype), e.g. `churn_reason`.

    Booleans and numbers stored in object columns (what a nullable SQL BOOLEAN can become) stay numeric, so a
    NULL in a flag column does not turn the flag into a category.
    """
    out = []
    for name in features:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            out.append(name)
        elif pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            continue
        elif pd.api.types.is_object_dtype(dtype):
            kind = pd.api.types.infer_dtype(frame[name], skipna=True)
            if kind not in ("boolean", "integer", "floating", "mixed-integer-float", "decimal", "empty"):
                out.append(name)
        elif pd.api.types.is_string_dtype(dtype):
            out.append(name)
    return out


def _as_float(col: pd.Series, name: str) -> np.ndarray:
    """Numeric feature -> float64 (bool -> 0/1, NULL -> NaN); text such as CSV fields is parsed strictly."""
    dtype = col.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return col.to_numpy(dtype="float64", na_value=np.nan)
    text = col.astype("string").str.strip()
    lower = text.str.lower()
    mapped = lower.where(~lower.isin(_TRUE), "1").where(~lower.isin(_FALSE), "0")
    mapped = mapped.where(~lower.isin(_NULL_TEXT), pd.NA)
    values = pd.to_numeric(mapped, errors="coerce")
    bad = values.isna().to_numpy() & mapped.notna().to_numpy()
    if bad.any():
        # Report the position, never the value: feature rows belong to customers.
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"feature {name!r}: {int(bad.sum())} value(s) are not numeric (first at row {first})")
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _as_category(col: pd.Series) -> Any:
    """Categorical feature -> string array, NULL -> a sentinel category (so it is one-hot, not dropped)."""
    if not (pd.api.types.is_string_dtype(col.dtype) and not pd.api.types.is_object_dtype(col.dtype)):
        if pd.api.types.infer_dtype(col, skipna=True) not in ("string", "empty"):
            col = col.astype("string")  # 3 and "3" must be the same category whichever path the row took
        col = col.astype("str")
    col = col.mask(col == "")  # an empty CSV field is NULL, so an empty string must be NULL here too
    return col.fillna(MISSING_CATEGORY).array


def coerce_features(X: Any, features: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """Raw feature values (DataFrame columns, or strings parsed from CSV) -> typed frame in `features` order."""
    if not isinstance(X, pd.DataFrame):
        X = pd.DataFrame(np.asarray(X, dtype=object), columns=list(features))
    missing = [f for f in features if f not in X.columns]
    if missing:
        raise KeyError(f"missing feature column(s): {', '.join(missing)}")
    cats = set(categorical)
    data = {f: (_as_category(X[f]) if f in cats else _as_float(X[f], f)) for f in features}
    return pd.DataFrame(data, index=X.index, columns=list(features))


# --------------------------------------------------------------------------------------------------------------
# Pipeline, training, evaluation
# --------------------------------------------------------------------------------------------------------------


def _category_codes(col: pd.Series, cats: np.ndarray) -> np.ndarray:
    """Index of each value in `cats`, -1 when unknown; Arrow's hash lookup avoids materialising Python strings."""
    try:
        arr = pa.array(col.array) if not pd.api.types.is_object_dtype(col.dtype) else None
    except (pa.ArrowException, TypeError):
        arr = None
    if arr is not None and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        idx = pc.index_in(arr, value_set=pa.array(list(cats), type=arr.type))
        return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return pd.Categorical(col, categories=cats).codes.astype(np.int64, copy=False)


class OneHot(TransformerMixin, BaseEstimator):
    """Dense one-hot encoding of string columns; unknown categories encode as all zeros (handle_unknown="ignore").

    Why not sklearn's OneHotEncoder: it converts the columns to Python object arrays and maps them value by value,
    which made it ~60 % of the predict time at 500,000 rows.  Here Arrow's (or pandas') hash lookup does it in C:
    the same semantics at a fraction of the cost.
    """

    def __init__(self, handle_unknown: str = "ignore"):
        self.handle_unknown = handle_unknown

    def fit(self, X: pd.DataFrame, y: Any = None) -> OneHot:
        if self.handle_unknown != "ignore":
            raise ValueError("only handle_unknown='ignore' is supported")
        X = pd.DataFrame(X)
        self.columns_ = [str(c) for c in X.columns]
        self.categories_ = [np.array(sorted(pd.unique(X[c].astype("str"))), dtype=object) for c in X.columns]
        self.n_features_in_ = len(self.columns_)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        X = pd.DataFrame(X)
        n = len(X)
        out = np.zeros((n, sum(len(c) for c in self.categories_)), dtype="float64")
        offset = 0
        rows = np.arange(n)
        for col, cats in zip(X.columns, self.categories_, strict=False):
            codes = _category_codes(X[col], cats)
            known = codes >= 0
            out[rows[known], offset + codes[known]] = 1.0
            offset += len(cats)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array(
            [f"{c}={v}" for c, cats in zip(self.columns_, self.categories_, strict=False) for v in cats], dtype=object
        )


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
    transformers = []
    if numeric:
        transformers.append(
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(("cat", OneHot(handle_unknown="ignore"), categorical))
    return Pipeline(
        [
            (
                "coerce",
                FunctionTransformer(
                    coerce_features,
                    kw_args={"features": features, "categorical": categorical},
                    validate=False,
                ),
            ),
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


def _serialize(pipeline: Pipeline) -> bytes:
    buf = io.BytesIO()
    joblib.dump(pipeline, buf)
    return buf.getvalue()


def content_version(artifact: bytes, features: Sequence[str]) -> str:
    """Content address of a model: same bytes and features -> same version, in any process."""
    h = hashlib.sha256(artifact)
    h.update(b"\0")
    h.update(json.dumps(list(features)).encode())
    return h.hexdigest()[:16]


def _label_array(col: pd.Series, label: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        y = col.to_numpy(dtype="float64", na_value=np.nan)
    else:
        y = _as_float(col, label)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"label {label!r} must be boolean or 0/1")
    return y.astype(int)


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
    """Fit on a stratified 80/20 split of `training`, evaluate on the 20 %, return the versioned model.

    Rows are put in a canonical order (by a hash of their feature/label values) before splitting, because a
    warehouse query without ORDER BY returns rows in any order: the same data and seed must give the same split,
    the same coefficients and therefore the same version, however the rows arrived.  Rows without a label are
    dropped (they are outcomes not yet known).
    """
    features = [str(f) for f in features]
    if not features:
        raise ValueError(f"{model_id}: no features")
    absent = [c for c in [*features, label, *([truth_column] if truth_column else [])] if c not in training.columns]
    if absent:
        raise KeyError(f"{model_id}: training frame lacks column(s): {', '.join(absent)}")
    if label in features or (truth_column and truth_column in features):
        raise ValueError(f"{model_id}: the label / truth column cannot be a feature")
    cat = list(categorical) if categorical is not None else infer_categorical(training, features)

    cols = [*features, label, *([truth_column] if truth_column else [])]
    frame = training.loc[training[label].notna(), cols]
    # The truth column is left out of the ordering key so that passing it cannot change the model or version.
    key = pd.util.hash_pandas_object(frame[[*features, label]], index=False).to_numpy()
    order = np.argsort(key, kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
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

    artifact = _serialize(pipeline)
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
    )


# --------------------------------------------------------------------------------------------------------------
# Loading (shared by the registry, LocalScoringResource and the endpoint server)
# --------------------------------------------------------------------------------------------------------------

_CACHE: OrderedDict[tuple[str, str], Pipeline] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 32


def load_pipeline(ref: ModelRef) -> Pipeline:
    """The fitted pipeline behind `ref`, cached per (artifact, version) for the life of the process.

    The file's hash is checked against the version, so a score is never stamped with a version it did not come
    from (a replaced or truncated artifact fails loudly instead).
    """
    key = (os.path.realpath(ref.artifact_path), ref.version)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    blob = Path(ref.artifact_path).read_bytes()
    actual = content_version(blob, ref.features)
    if actual != ref.version:
        raise ValueError(
            f"artifact {ref.artifact_path} hashes to {actual}, not {ref.version} "
            f"(corrupt, replaced, or the ref's features differ from the trained ones)"
        )
    pipeline = joblib.load(io.BytesIO(blob))
    with _CACHE_LOCK:
        _CACHE[key] = pipeline
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return pipeline


# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers (scoring runs, the endpoint) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelRegistry:
    """Versions on a file system (local dir or a mounted volume); `current.json` marks the promoted one."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _model_dir(self, program_id: str, model_id: str) -> Path:
        return self.root / program_id / model_id

    def _version_dir(self, program_id: str, model_id: str, version: str) -> Path:
        return self._model_dir(program_id, model_id) / version

    def save(self, trained: TrainedModel) -> Path:
        """Write model.joblib + metrics.json for the version; returns the artifact path.  Idempotent."""
        vdir = self._version_dir(trained.program_id, trained.model_id, trained.version)
        artifact = vdir / "model.joblib"
        blob = trained.artifact or _serialize(trained.pipeline)
        if content_version(blob, trained.features) != trained.version:
            raise ValueError(f"{trained.model_id}: artifact does not match version {trained.version}")
        if not artifact.exists():
            _write_atomic(artifact, blob)
        meta = vdir / "metrics.json"
        if not meta.exists():
            doc = {
                "model_id": trained.model_id,
                "program_id": trained.program_id,
                "version": trained.version,
                "features": list(trained.features),
                "categorical": list(trained.categorical),
                "label": trained.label,
                "metrics": trained.metrics,
                "sklearn_version": sklearn.__version__,
                "saved_at": _now(),
            }
            _write_atomic(meta, json.dumps(doc, indent=2, sort_keys=True).encode())
        return artifact

    def metadata(self, program_id: str, model_id: str, version: str) -> dict[str, Any]:
        path = self._version_dir(program_id, model_id, version) / "metrics.json"
        return json.loads(path.read_text())

    def _ref(self, program_id: str, model_id: str, version: str, endpoint: str | None) -> ModelRef:
        meta = self.metadata(program_id, model_id, version)
        return ModelRef(
            model_id=model_id,
            program_id=program_id,
            version=version,
            endpoint=endpoint or f"sagemaker://{model_id}",
            features=tuple(meta["features"]),
            artifact_path=str(self._version_dir(program_id, model_id, version) / "model.joblib"),
        )

    def current(self, program_id: str, model_id: str, endpoint: str | None = None) -> ModelRef | None:
        """The promoted version, or None before the first training.  `endpoint` defaults to sagemaker://<id>."""
        pointer = self._model_dir(program_id, model_id) / "current.json"
        if not pointer.exists():
            return None
        version = json.loads(pointer.read_text())["version"]
        return self._ref(program_id, model_id, version, endpoint)

    def current_models(self, program_id: str) -> dict[str, ModelRef]:
        """model_id -> promoted ModelRef for every model of a program (what an endpoint server serves)."""
        pdir = self.root / program_id
        out: dict[str, ModelRef] = {}
        if pdir.is_dir():
            for mdir in sorted(p for p in pdir.iterdir() if p.is_dir()):
                ref = self.current(program_id, mdir.name)
                if ref is not None:
                    out[mdir.name] = ref
        return out

    def load(self, ref: ModelRef) -> Pipeline:
        return load_pipeline(ref)

    def _incumbent_value(self, trained: TrainedModel, current: ModelRef, metric: str) -> tuple[float, str]:
        """The incumbent's metric, on the candidate's own holdout when possible.

        Comparing stored metrics from different holdouts lets sampling noise decide promotions; scoring both
        models on the same rows removes it.  Falls back to the stored value when the holdout is not in memory
        (e.g. a model loaded from disk) or the incumbent uses features the candidate's holdout lacks.
        """
        h = trained.holdout
        if (
            h is not None
            and set(current.features) <= set(h.X.columns)
            and (metric != "truth_mae" or h.truth is not None)
        ):
            try:
                values = evaluate(self.load(current), h.X[list(current.features)], h.y, h.truth)
                if metric in values:
                    return values[metric], "same holdout"
            except Exception:  # noqa: BLE001 - an unloadable incumbent is judged by its stored metrics
                pass
        stored = self.metadata(current.program_id, current.model_id, current.version)["metrics"]
        if metric not in stored:
            raise ValueError(f"current {current.model_id}@{current.version} has no metric {metric!r}")
        return float(stored[metric]), "stored holdout"

    def promote_if_improved(
        self, trained: TrainedModel, metric: str = "roc_auc", min_gain: float = 0.0
    ) -> tuple[bool, str]:
        """Save the candidate; make it current only if it beats the current version by more than `min_gain`.

        "Deploy if improved": the first model is always promoted; an equal or worse candidate stays on disk
        (auditable, re-promotable) but scoring keeps using the incumbent.  For log_loss/brier/truth_mae lower is
        better.  Every decision is appended to promotions.jsonl.
        """
        if metric not in trained.metrics:
            raise ValueError(f"candidate has no metric {metric!r}; has {sorted(trained.metrics)}")
        self.save(trained)
        program_id, model_id = trained.program_id, trained.model_id
        current = self.current(program_id, model_id)
        candidate_value = float(trained.metrics[metric])
        if current is None:
            promoted, reason, incumbent = True, f"first {model_id} model ({metric}={candidate_value:.4f})", None
        elif current.version == trained.version:
            promoted, reason, incumbent = False, f"version {trained.version} is already current", None
        else:
            incumbent, basis = self._incumbent_value(trained, current, metric)
            gain = candidate_value - incumbent if metric not in LOWER_IS_BETTER else incumbent - candidate_value
            promoted = gain > min_gain
            verdict = "improves on" if promoted else "does not improve on"
            reason = (
                f"{trained.version} {verdict} {current.version}: {metric} {candidate_value:.4f} vs "
                f"{incumbent:.4f} ({basis}), gain {gain:+.4f}, required > {min_gain:g}"
            )
        record = {
            "at": _now(),
            "version": trained.version,
            "promoted": promoted,
            "metric": metric,
            "value": candidate_value,
            "incumbent_version": current.version if current else None,
            "incumbent_value": incumbent,
            "reason": reason,
        }
        mdir = self._model_dir(program_id, model_id)
        if promoted:
            _write_atomic(mdir / "current.json", json.dumps(record, indent=2, sort_keys=True).encode())
        with open(mdir / "promotions.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        return promoted, reason
