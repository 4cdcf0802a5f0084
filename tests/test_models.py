"""Training, evaluation and the model registry, on labelled data drawn from a known logistic process.

Because the generating probability is known, the tests can check that the model recovers it (not only that
its AUC is "good"), which is what makes scores comparable across programs and budgets meaningful.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engage_assets.domain.models import (
    ModelRef,
    ModelRegistry,
    build_pipeline,
    infer_categorical,
    load_pipeline,
    train_model,
)

CHURN_FEATURES = ["engagement_score", "login_frequency", "purchase_frequency", "support_tickets"]
WINBACK_FEATURES = ["lifetime_value", "churn_reason", "subscription_tenure", "engagement_history"]
REASON_EFFECT = {"price": 0.6, "features": 0.2, "competition": -0.2, "support": -0.7}


def churn_history(n: int, seed: int = 0) -> pd.DataFrame:
    """Labelled churn outcomes: P(churn) is logistic-linear in the four config features."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "customer_id": [f"C{i:08d}" for i in range(n)],
            "engagement_score": rng.uniform(0, 1, n),
            "login_frequency": rng.gamma(2.0, 1.5, n),
            "purchase_frequency": rng.gamma(1.5, 1.0, n),
            "support_tickets": rng.poisson(1.2, n),
        }
    )
    z = (
        0.8
        - 2.5 * df["engagement_score"]
        - 0.35 * df["login_frequency"]
        - 0.4 * df["purchase_frequency"]
        + 0.45 * df["support_tickets"]
    )
    df["true_p_churn"] = 1.0 / (1.0 + np.exp(-z))
    df["churned_90d"] = rng.uniform(0, 1, n) < df["true_p_churn"]
    return df


def winback_history(n: int, seed: int = 0) -> pd.DataFrame:
    """Labelled win-back outcomes with a categorical feature (churn_reason) in the logistic process."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "lifetime_value": rng.uniform(200, 3000, n),
            "churn_reason": rng.choice(list(REASON_EFFECT), n),
            "subscription_tenure": rng.integers(1, 72, n),
            "engagement_history": rng.uniform(0, 1, n),
        }
    )
    z = (
        -1.2
        + 0.0006 * df["lifetime_value"]
        + df["churn_reason"].map(REASON_EFFECT).to_numpy()
        + 0.015 * df["subscription_tenure"]
        + 1.5 * df["engagement_history"]
    )
    df["true_p_returned"] = 1.0 / (1.0 + np.exp(-z))
    df["returned"] = rng.uniform(0, 1, n) < df["true_p_returned"]
    return df


@pytest.fixture(scope="module")
def churn_df() -> pd.DataFrame:
    return churn_history(40_000, seed=1)


@pytest.fixture(scope="module")
def churn_model(churn_df):
    return train_model(
        "churn-risk-v6", "churn-prevention", CHURN_FEATURES, churn_df, "churned_90d", truth_column="true_p_churn"
    )


def test_recovers_the_generating_probability(churn_model):
    m = churn_model.metrics
    assert m["n_train"] == 32_000 and m["n_holdout"] == 8_000
    # As good as knowing the true probability, and calibrated against it row by row.
    assert m["roc_auc"] > m["truth_roc_auc"] - 0.01
    assert m["truth_mae"] < 0.015
    assert abs(m["mean_predicted"] - m["positive_rate"]) < 0.02
    assert 0 < m["brier"] < 0.25 and m["log_loss"] < np.log(2)
    assert churn_model.categorical == ()
    assert churn_model.features == tuple(CHURN_FEATURES)


def test_categorical_features_are_one_hot_and_tolerate_new_values():
    df = winback_history(20_000, seed=2)
    assert infer_categorical(df, WINBACK_FEATURES) == ["churn_reason"]
    trained = train_model(
        "win-back-likelihood-v3",
        "win-back-campaigns",
        WINBACK_FEATURES,
        df,
        "returned",
        truth_column="true_p_returned",
    )
    assert trained.categorical == ("churn_reason",)
    assert trained.metrics["truth_mae"] < 0.03
    rows = df[WINBACK_FEATURES].head(4).copy()
    rows["churn_reason"] = ["price", "brand-new-reason", None, "support"]
    rows.loc[rows.index[0], "lifetime_value"] = np.nan  # imputed, not an error
    p = trained.pipeline.predict_proba(rows)[:, 1]
    assert p.shape == (4,) and np.isfinite(p).all()


def test_bool_and_nullable_columns_are_numeric():
    rng = np.random.default_rng(3)
    n = 5_000
    df = pd.DataFrame(
        {
            "item_damaged": pd.array(rng.uniform(size=n) < 0.3, dtype="boolean"),
            "delay_days": pd.array(rng.integers(0, 10, n), dtype="Int64"),
        }
    )
    df.loc[:10, "delay_days"] = pd.NA
    z = -1 + 1.2 * df["item_damaged"].astype(float) + 0.2 * df["delay_days"].astype(float).fillna(3)
    df["dissatisfied"] = rng.uniform(size=n) < 1 / (1 + np.exp(-z))
    assert infer_categorical(df, ["item_damaged", "delay_days"]) == []
    trained = train_model(
        "satisfaction-impact-v2", "proactive-refunds", ["item_damaged", "delay_days"], df, "dissatisfied"
    )
    assert trained.metrics["roc_auc"] > 0.6


def test_version_is_content_addressed(churn_df, churn_model):
    again = train_model(
        "churn-risk-v6", "churn-prevention", CHURN_FEATURES, churn_df, "churned_90d", truth_column="true_p_churn"
    )
    assert again.version == churn_model.version and len(again.version) == 16
    # Row order is not data: a warehouse may return the same rows in any order.
    shuffled = churn_df.sample(frac=1.0, random_state=7)
    assert train_model("churn-risk-v6", "churn-prevention", CHURN_FEATURES, shuffled, "churned_90d").version == (
        churn_model.version
    )
    changed = churn_df.iloc[:-100]
    assert train_model("churn-risk-v6", "churn-prevention", CHURN_FEATURES, changed, "churned_90d").version != (
        churn_model.version
    )
    other_seed = train_model("churn-risk-v6", "churn-prevention", CHURN_FEATURES, churn_df, "churned_90d", seed=1)
    assert other_seed.version != churn_model.version
    fewer = train_model("churn-risk-v6", "churn-prevention", CHURN_FEATURES[:3], churn_df, "churned_90d")
    assert fewer.version != churn_model.version


def test_unlabelled_rows_are_dropped_and_bad_inputs_rejected(churn_df):
    df = churn_df.head(2_000).copy()
    df["churned_90d"] = df["churned_90d"].astype("boolean")
    df.loc[df.index[:500], "churned_90d"] = pd.NA
    trained = train_model("m", "p", CHURN_FEATURES, df, "churned_90d")
    assert trained.metrics["n_train"] + trained.metrics["n_holdout"] == 1_500
    with pytest.raises(KeyError, match="no_such_feature"):
        train_model("m", "p", [*CHURN_FEATURES, "no_such_feature"], df, "churned_90d")
    with pytest.raises(ValueError, match="label"):
        train_model("m", "p", [*CHURN_FEATURES, "churned_90d"], df, "churned_90d")
    one_class = df.assign(churned_90d=False)
    with pytest.raises(ValueError, match="each class"):
        train_model("m", "p", CHURN_FEATURES, one_class, "churned_90d")
    with pytest.raises(ValueError, match="not in features"):
        build_pipeline(["a"], ["b"])


def test_registry_round_trip(tmp_path, churn_df, churn_model):
    registry = ModelRegistry(tmp_path)
    assert registry.current("churn-prevention", "churn-risk-v6") is None
    path = registry.save(churn_model)
    assert path == tmp_path / "churn-prevention" / "churn-risk-v6" / churn_model.version / "model.joblib"
    meta = json.loads((path.parent / "metrics.json").read_text())
    assert meta["features"] == CHURN_FEATURES and meta["metrics"]["roc_auc"] == churn_model.metrics["roc_auc"]
    assert registry.save(churn_model) == path  # idempotent

    promoted, _ = registry.promote_if_improved(churn_model)
    ref = registry.current("churn-prevention", "churn-risk-v6")
    assert promoted and isinstance(ref, ModelRef)
    assert (ref.version, ref.features, ref.endpoint) == (
        churn_model.version,
        tuple(CHURN_FEATURES),
        "sagemaker://churn-risk-v6",
    )
    assert ref.artifact_path == str(path)
    assert registry.current_models("churn-prevention") == {"churn-risk-v6": ref}

    loaded = registry.load(ref)
    assert registry.load(ref) is loaded  # cached in-process
    X = churn_df[CHURN_FEATURES].head(1_000)
    np.testing.assert_array_equal(loaded.predict_proba(X), churn_model.pipeline.predict_proba(X))


def test_tampered_artifact_is_refused(tmp_path, churn_model):
    registry = ModelRegistry(tmp_path)
    path = registry.save(churn_model)
    ref = ModelRef(
        "churn-risk-v6", "churn-prevention", churn_model.version, "sagemaker://x", churn_model.features, str(path)
    )
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="hashes to"):
        load_pipeline(ref)


def test_deploy_if_improved(tmp_path, churn_df):
    registry = ModelRegistry(tmp_path)
    args = ("churn-risk-v6", "churn-prevention")
    medium = train_model(*args, CHURN_FEATURES[:3], churn_df, "churned_90d")
    worse = train_model(*args, ["purchase_frequency", "support_tickets"], churn_df, "churned_90d")
    better = train_model(*args, CHURN_FEATURES, churn_df, "churned_90d")

    promoted, reason = registry.promote_if_improved(medium)
    assert promoted and "first" in reason
    assert registry.current(*args[::-1]).version == medium.version

    promoted, reason = registry.promote_if_improved(worse)
    assert not promoted and "does not improve" in reason
    assert registry.current(*args[::-1]).version == medium.version
    assert (tmp_path / args[1] / args[0] / worse.version / "model.joblib").exists()  # kept for audit

    promoted, reason = registry.promote_if_improved(medium)
    assert not promoted and "already current" in reason

    # A gain smaller than required is not enough; then the same candidate passes with the default.
    promoted, _ = registry.promote_if_improved(better, min_gain=0.5)
    assert not promoted
    promoted, reason = registry.promote_if_improved(better, metric="log_loss")  # lower is better
    assert promoted and "improves on" in reason and "same holdout" in reason
    assert registry.current(*args[::-1]).version == better.version

    log = [json.loads(line) for line in (tmp_path / args[1] / args[0] / "promotions.jsonl").read_text().splitlines()]
    assert [r["promoted"] for r in log] == [True, False, False, False, True]


def test_incumbent_judged_on_stored_metrics_when_holdout_is_gone(tmp_path, churn_df):
    registry = ModelRegistry(tmp_path)
    args = ("churn-risk-v6", "churn-prevention")
    first = train_model(*args, CHURN_FEATURES, churn_df, "churned_90d")
    registry.promote_if_improved(first)
    worse = train_model(*args, ["purchase_frequency", "support_tickets"], churn_df, "churned_90d")
    worse.holdout = None
    promoted, reason = registry.promote_if_improved(worse)
    assert not promoted and "stored holdout" in reason
    with pytest.raises(ValueError, match="no metric"):
        registry.promote_if_improved(worse, metric="truth_mae")


def test_artifacts_pickled_before_the_move_still_load():
    """Promoted models trained before the code moved into engage_assets.domain name `engage_assets.models.OneHot`."""
    import pickle

    from engage_assets.domain import models

    old = pickle.dumps(models.OneHot, protocol=0).replace(b"engage_assets.domain.models", b"engage_assets.models")
    assert b"engage_assets.models" in old and pickle.loads(old) is models.OneHot
