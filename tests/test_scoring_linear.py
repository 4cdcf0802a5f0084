"""The compiled linear scorer (`engage_assets.domain.models.linear`): the same numbers as the pipeline's
`predict_proba`, and None (sklearn scores) for any pipeline of another shape; its `linear.json` artifact, which the
registry writes beside `model.joblib` and local scoring reads without unpickling (so without importing sklearn)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from engage_assets.domain.models import ModelRegistry, load_pipeline, train_model
from engage_assets.domain.models.linear import LINEAR_ARTIFACT, compile_linear, linear_scorer, load_linear
from resources.scoring.local import LocalScoringResource

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


def saved_mixed_model(root: Path):
    """A mixed (numeric + categorical) model saved in a registry under `root`: its ref and its pipeline."""
    trained = train_model("m", "p", MIXED_FEATURES, mixed_history(3_000, 8), "y")
    registry = ModelRegistry(root)
    registry.save(trained)
    return registry.ref("p", "m", trained.version), trained.pipeline


def scoring_rows() -> pd.DataFrame:
    X = mixed_history(200, 9)[MIXED_FEATURES].astype({"reason": object})
    X.loc[X.index[1], "reason"] = None
    X.loc[X.index[2], "reason"] = "never seen"
    return X


def test_saved_versions_carry_their_linear_parameters_and_score_identically(tmp_path):
    ref, pipeline = saved_mixed_model(tmp_path)
    path = Path(ref.artifact_path).with_name(LINEAR_ARTIFACT)
    assert json.loads(path.read_text())["version"] == ref.version
    saved = load_linear(ref.artifact_path, ref.version)
    assert saved is not None and saved.categorical == ("reason",)
    X = scoring_rows()
    expected = pipeline.predict_proba(X)[:, 1]
    np.testing.assert_array_equal(saved.score(X), expected)  # read back from JSON: the very same numbers
    np.testing.assert_array_equal(LocalScoringResource().score(ref, X), expected)


def test_a_version_without_linear_parameters_is_scored_from_its_pickle(tmp_path):
    ref, pipeline = saved_mixed_model(tmp_path)
    Path(ref.artifact_path).with_name(LINEAR_ARTIFACT).unlink()  # as a version promoted before the artifact existed
    assert load_linear(ref.artifact_path, ref.version) is None
    X = scoring_rows()
    np.testing.assert_array_equal(LocalScoringResource().score(ref, X), pipeline.predict_proba(X)[:, 1])
    assert load_pipeline(ref) is not None


def test_a_linear_artifact_of_another_version_or_altered_is_refused(tmp_path):
    ref, _ = saved_mixed_model(tmp_path)
    path = Path(ref.artifact_path).with_name(LINEAR_ARTIFACT)
    doc = json.loads(path.read_text())
    doc["params"]["intercept"] = [doc["params"]["intercept"][0] + 1.0]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="do not match their hash"):
        load_linear(ref.artifact_path, ref.version)
    with pytest.raises(ValueError, match="version"):
        load_linear(ref.artifact_path, "0123456789abcdef")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a linear scorer artifact"):
        load_linear(ref.artifact_path, "fedcba9876543210")


def test_scoring_a_saved_version_imports_no_sklearn(tmp_path):
    ref, pipeline = saved_mixed_model(tmp_path)
    X = scoring_rows()
    X.to_pickle(tmp_path / "rows.pkl")
    code = textwrap.dedent(
        f"""
        import sys, json
        import pandas as pd
        from engage_assets.domain.models import ModelRegistry
        from resources.scoring.local import LocalScoringResource
        ref = ModelRegistry({str(tmp_path)!r}).ref("p", "m", {ref.version!r})
        scores = LocalScoringResource().score(ref, pd.read_pickle({str(tmp_path / "rows.pkl")!r}))
        print(json.dumps({{"sklearn": "sklearn" in sys.modules, "scores": scores.tolist()}}))
        """
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert out["sklearn"] is False
    np.testing.assert_array_equal(np.asarray(out["scores"]), pipeline.predict_proba(X)[:, 1])
