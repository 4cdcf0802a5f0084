"""What a candidate model is judged against: a naive one-feature baseline, a paired test, the hidden truth, drift.

- `one_feature_baseline`: the best single feature, chosen on the training rows (a number as it is, oriented; a
  category as its training positive rate), scored on the holdout.  A model that cannot beat one raw column has
  learned nothing worth deploying, so the registry never promotes it (not even as a first version).
- `paired_auc_test`: DeLong's test of two ROC AUCs on the same rows (the candidate against the baseline, or against
  the incumbent); the registry promotes over the baseline only when the gain is more than `z` of its standard error.
- `auc_vs_truth`: the ROC AUC a score would have in expectation over outcomes drawn from the hidden truth (the
  generator's true probability): each row counts as a positive with weight p and a negative with weight 1 - p.
  Evaluation only, never needed to train.
- `score_reference` / `psi`: the training score distribution in ten equal-count bins, and the population stability
  index of new scores against it (the drift check).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engage_assets.domain.models.features import as_float


def roc_auc_score(y: np.ndarray, s: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """sklearn's ROC AUC, imported when first used: importing sklearn.metrics costs ~1 s (scipy.stats), which the
    decision path, which reaches this package but never evaluates, should not pay at every run's start."""
    from sklearn.metrics import roc_auc_score as sklearn_roc_auc

    return float(sklearn_roc_auc(y, s, sample_weight=sample_weight))


PSI_BINS = 10
PSI_FLOOR = 1e-4  # an empty bin counts as this share, so one empty bin does not make the index infinite


@dataclass(frozen=True)
class Baseline:
    """The naive one-feature baseline: which feature, its holdout scores and AUC."""

    feature: str
    scores: np.ndarray
    roc_auc: float


def _one_feature_scores(
    train: pd.Series, y_train: np.ndarray, hold: pd.Series, categorical: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(train scores, holdout scores) of one feature used alone: a category's training positive rate, or the number
    itself (NULL as the training median), turned so that larger means more positives."""
    if categorical:
        keys_train = train.astype("string").fillna("")
        rates = pd.Series(y_train).groupby(keys_train.to_numpy()).mean()
        prior = float(y_train.mean())
        s_train = keys_train.map(rates).astype("float64").fillna(prior).to_numpy()
        s_hold = hold.astype("string").fillna("").map(rates).astype("float64").fillna(prior).to_numpy()
        return s_train, s_hold
    x_train, x_hold = as_float(train, str(train.name)), as_float(hold, str(hold.name))
    finite = x_train[np.isfinite(x_train)]
    fill = float(np.median(finite)) if finite.size else 0.0
    x_train = np.where(np.isfinite(x_train), x_train, fill)
    x_hold = np.where(np.isfinite(x_hold), x_hold, fill)
    if np.ptp(x_train) == 0 or roc_auc_score(y_train, x_train) >= 0.5:
        return x_train, x_hold
    return -x_train, -x_hold


def one_feature_baseline(
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_hold: pd.DataFrame,
    y_hold: np.ndarray,
    features: Sequence[str],
    categorical: Sequence[str],
) -> Baseline:
    """The single feature that ranks the training rows best, scored on the holdout (module docstring)."""
    cats = set(categorical)
    best: tuple[float, str, np.ndarray] | None = None
    for name in features:
        s_train, s_hold = _one_feature_scores(X_train[name], y_train, X_hold[name], name in cats)
        train_auc = 0.5 if np.ptp(s_train) == 0 else float(roc_auc_score(y_train, s_train))
        if best is None or train_auc > best[0]:
            best = (train_auc, name, s_hold)
    if best is None:
        raise ValueError("a baseline needs at least one feature")
    _, name, scores = best
    return Baseline(feature=name, scores=scores, roc_auc=float(roc_auc_score(y_hold, scores)))


def _midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype="float64")
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def _delong_components(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the structural components V10 (per positive) and V01 (per negative) of DeLong et al. (1988)."""
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    r_all = _midranks(np.concatenate([pos, neg]))
    r_pos, r_neg = _midranks(pos), _midranks(neg)
    v10 = (r_all[:m] - r_pos) / n
    v01 = 1.0 - (r_all[m:] - r_neg) / m
    return float(v10.mean()), v10, v01


def paired_auc_test(y: np.ndarray, candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(AUC gain of `candidate` over `reference` on the same rows, its DeLong standard error)."""
    y = np.asarray(y, dtype=int)
    a1, v10_1, v01_1 = _delong_components(y, np.asarray(candidate, dtype="float64"))
    a2, v10_2, v01_2 = _delong_components(y, np.asarray(reference, dtype="float64"))
    m, n = len(v10_1), len(v01_1)
    s10 = np.cov(np.vstack([v10_1, v10_2])) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01_1, v01_2])) if n > 1 else np.zeros((2, 2))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return a1 - a2, float(np.sqrt(max(var, 0.0)))


def one_sided_p(gain: float, se: float) -> float:
    """P(a gain this large | no real gain), normal approximation; 0 or 1 when the standard error is zero."""
    if se <= 0:
        return 0.0 if gain > 0 else 1.0
    return 0.5 * math.erfc(gain / se / math.sqrt(2.0))


def auc_vs_truth(scores: np.ndarray, truth: np.ndarray) -> float:
    """Expected ROC AUC of `scores` when each outcome is drawn from `truth` (module docstring)."""
    p = np.clip(np.asarray(truth, dtype="float64"), 0.0, 1.0)
    s = np.asarray(scores, dtype="float64")
    y = np.concatenate([np.ones(len(s)), np.zeros(len(s))])
    return float(roc_auc_score(y, np.concatenate([s, s]), sample_weight=np.concatenate([p, 1.0 - p])))


def score_reference(scores: np.ndarray, bins: int = PSI_BINS) -> dict[str, list[float]]:
    """The inner edges of `bins` equal-count bins of the training scores, and each bin's share of them."""
    s = np.asarray(scores, dtype="float64")
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("no finite scores to take a reference from")
    edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, s, side="right"), minlength=len(edges) + 1)
    return {"edges": [float(e) for e in edges], "fractions": [float(c) for c in counts / s.size]}


def psi(reference: dict[str, list[float]], scores: np.ndarray) -> float:
    """Population stability index of `scores` against a `score_reference`: sum of (a - e) * ln(a / e) over bins."""
    edges = np.asarray(reference["edges"], dtype="float64")
    expected = np.asarray(reference["fractions"], dtype="float64")
    s = np.asarray(scores, dtype="float64")
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("no finite scores to compare")
    actual = np.bincount(np.searchsorted(edges, s, side="right"), minlength=len(edges) + 1) / s.size
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))
