"""The compiled linear scorer (`resources.scoring.linear`): the same numbers as the pipeline's `predict_proba`, and
None (sklearn scores) for any pipeline of another shape."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from engage_assets.domain.models import train_model
from resources.scoring.linear import compile_linear, linear_scorer

CART_FEATURES = ["purchase_history", "cart_value", "email_engagement", "discount_sensitivity"]
MIXED_FEATURES = ["value", "reason", "tenure", "flag"]


def cart_history(n: int, seed: int, missing: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "purchase_history": rng.integers(0, 40, n).astype(float),
            "cart_value": rng.uniform(10, 900, n),
            "email_engagement": rng.uniform(0, 1, n),
            "discount_sensitivity": rng.uniform(0, 1, n),
        }
    )
    if missing:  # missing at fit: the imputer adds indicator columns for these two
        df.loc[rng.uniform(0, 1, n) < 0.1, "email_engagement"] = np.nan
        df.loc[rng.uniform(0, 1, n) < 0.05, "purchase_history"] = np.nan
    z = -2 + 0.04 * df["purchase_history"].fillna(3) + 0.002 * df["cart_value"] + df["email_engagement"].fillna(0.2)
    df["bought"] = rng.uniform(0, 1, n) < 1 / (1 + np.exp(-z))
    return df


def mixed_history(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "value": rng.uniform(0, 100, n),
            "reason": rng.choice(["a", "b", "c"], n),
            "tenure": rng.integers(1, 50, n),
            "flag": rng.uniform(0, 1, n) < 0.4,
        }
    )
    z = 0.02 * df["value"] + df["reason"].map({"a": 0.5, "b": 0.0, "c": -0.5}) - 0.01 * df["tenure"] + df["flag"]
    df["y"] = rng.uniform(0, 1, n) < 1 / (1 + np.exp(-(z - 1)))
    return df


@pytest.mark.parametrize("missing", [False, True])
def test_numeric_models_score_exactly_as_predict_proba(missing):
    trained = train_model("intent", "cart", CART_FEATURES, cart_history(5_000, 1, missing), "bought")
    scorer = compile_linear(trained.pipeline)
    assert scorer is not None
    assert len(scorer.flagged) == (2 if missing else 0)
    X = cart_history(400, 2, missing=True)[CART_FEATURES]  # NULLs at scoring time whatever the fit saw
    X.loc[X.index[0], "cart_value"] = np.nan
    expected = trained.pipeline.predict_proba(X)[:, 1]
    np.testing.assert_array_equal(scorer.score(X), expected)
    one = X.iloc[[7]]  # the event path's single row
    np.testing.assert_array_equal(scorer.score(one), trained.pipeline.predict_proba(one)[:, 1])
    assert scorer.score(X.iloc[:0]).shape == (0,)


def test_categorical_and_boolean_features_score_exactly_as_predict_proba():
    trained = train_model("m", "p", MIXED_FEATURES, mixed_history(4_000, 3), "y")
    scorer = compile_linear(trained.pipeline)
    assert scorer is not None and scorer.categorical == ("reason",)
    X = mixed_history(300, 4)[MIXED_FEATURES].astype({"reason": object, "tenure": object})
    X.loc[X.index[1], "reason"] = None
    X.loc[X.index[2], "reason"] = "never seen"
    X.loc[X.index[3], "tenure"] = "12"  # text is parsed as the pipeline's coercion parses it
    X = X.iloc[::-1]
    np.testing.assert_array_equal(scorer.score(X), trained.pipeline.predict_proba(X)[:, 1])


def test_bad_values_are_refused_as_the_pipeline_refuses_them():
    trained = train_model("m", "p", MIXED_FEATURES, mixed_history(2_000, 5), "y")
    scorer = compile_linear(trained.pipeline)
    assert scorer is not None
    X = mixed_history(10, 6)[MIXED_FEATURES].astype({"tenure": object})
    X.loc[X.index[4], "tenure"] = "twelve"
    with pytest.raises(ValueError, match="tenure.*not numeric"):
        scorer.score(X)
    with pytest.raises(ValueError, match="tenure.*not numeric"):
        trained.pipeline.predict_proba(X)


def test_other_shapes_are_left_to_sklearn():
    trained = train_model("intent", "cart", CART_FEATURES, cart_history(2_000, 7, missing=True), "bought")
    tree = copy.deepcopy(trained.pipeline)
    tree.steps[-1] = ("classifier", DecisionTreeClassifier().fit(np.zeros((4, 6)), [0, 1, 0, 1]))
    assert compile_linear(tree) is None
    mean_impute = copy.deepcopy(trained.pipeline)
    mean_impute.named_steps["features"].named_transformers_["num"].steps[0][1].strategy = "mean"
    assert compile_linear(mean_impute) is None
    renamed = copy.deepcopy(trained.pipeline)
    renamed.steps[0] = ("parse", renamed.steps[0][1])
    assert compile_linear(renamed) is None
    assert compile_linear(object()) is None
    assert linear_scorer(trained.pipeline) is linear_scorer(trained.pipeline)  # compiled once per pipeline
