"""`OneHot`, the pipelines' one-hot encoder: an sklearn transformer, so it lives apart from `features` (which the
sklearn-free decision path imports; sklearn costs ~1 s to import).  The encoding itself is `features.onehot_encode`,
shared with the sklearn-free `LinearScorer`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from engage_assets.domain.models.features import PICKLED_AS, onehot_encode


class OneHot(TransformerMixin, BaseEstimator):
    """Dense one-hot encoding of string columns; unknown categories encode as all zeros (handle_unknown="ignore").

    Why not sklearn's OneHotEncoder: it converts the columns to Python object arrays and maps them value by value,
    which made it ~60 % of the predict time at 500,000 rows.  Here Arrow's (or pandas') hash lookup does it in C:
    the same semantics at a fraction of the cost.
    """

    def __init__(self, handle_unknown: str = "ignore"):
        self.handle_unknown = handle_unknown

    def fit(self, X: pd.DataFrame, y: Any = None) -> OneHot:
        """Learn each column's categories (sorted)."""
        if self.handle_unknown != "ignore":
            raise ValueError("only handle_unknown='ignore' is supported")
        X = pd.DataFrame(X)
        self.columns_ = [str(c) for c in X.columns]
        self.categories_ = [np.array(sorted(pd.unique(X[c].astype("str"))), dtype=object) for c in X.columns]
        self.n_features_in_ = len(self.columns_)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """One 0/1 column per learned category, in column then category order."""
        return onehot_encode(X, self.categories_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """`column=category` for every output column."""
        return np.array(
            [f"{c}={v}" for c, cats in zip(self.columns_, self.categories_, strict=False) for v in cats], dtype=object
        )


# The pickled pipelines name it `engage_assets.domain.models.OneHot` (see `features.PICKLED_AS`).
OneHot.__module__ = PICKLED_AS
