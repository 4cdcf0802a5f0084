"""Feature typing and coercion, and the one-hot encoder: the first steps of every model pipeline.

These run INSIDE the pickled pipeline (see `engage_assets.domain.models`), so scores are identical whether rows
arrive as a DataFrame (local scoring) or as CSV text (the SageMaker protocol).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

MISSING_CATEGORY = "__missing__"
_TRUE = frozenset({"true", "t", "yes", "y"})
_FALSE = frozenset({"false", "f", "no", "n"})
_NULL_TEXT = frozenset({"", "nan", "none", "null", "na", "<na>"})
# What pandas' infer_dtype calls a column an object column may hold and still be numeric.
_NUMERIC_KINDS = frozenset({"boolean", "integer", "floating", "mixed-integer-float", "decimal", "empty"})


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
            if pd.api.types.infer_dtype(frame[name], skipna=True) not in _NUMERIC_KINDS:
                out.append(name)
        elif pd.api.types.is_string_dtype(dtype):
            out.append(name)
    return out


def as_float(col: pd.Series, name: str) -> np.ndarray:
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
    data = {f: (_as_category(X[f]) if f in cats else as_float(X[f], f)) for f in features}
    return pd.DataFrame(data, index=X.index, columns=list(features))


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


def onehot_encode(X: pd.DataFrame, categories: Sequence[np.ndarray]) -> np.ndarray:
    """One 0/1 column per category, in column then category order; a value not in its column's categories encodes
    as all zeros.  `OneHot.transform` (in the pickled pipelines) and the sklearn-free `LinearScorer` both use it."""
    X = pd.DataFrame(X)
    n = len(X)
    out = np.zeros((n, sum(len(c) for c in categories)), dtype="float64")
    offset = 0
    rows = np.arange(n)
    for col, cats in zip(X.columns, categories, strict=False):
        codes = _category_codes(X[col], cats)
        known = codes >= 0
        out[rows[known], offset + codes[known]] = 1.0
        offset += len(cats)
    return out


# A pickle names a function or class by its module path, so the path is part of every artifact's bytes and hence of
# its version.  These two keep the path they had before `models` became a package (`engage_assets.domain.models`,
# which re-exports them): the same model on the same data keeps its version, and artifacts written by either side of
# the split load on the other.
PICKLED_AS = "engage_assets.domain.models"
coerce_features.__module__ = PICKLED_AS
