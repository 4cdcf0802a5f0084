"""Models over time (#11, item 7): the naive-baseline gate, the decision records, rollback, and the statistics
behind them (the paired AUC test, AUC against the hidden truth, PSI), on data drawn from a known process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from engage_assets.domain.config import ScoringModel
from engage_assets.domain.models import ModelRegistry, auc_vs_truth, psi, score_reference, train_model
from engage_assets.domain.models.evaluation import one_sided_p, paired_auc_test
from resources.scoring.training_data import read_training_frame
from resources.warehouse.duckdb import DuckDBWarehouse
from tests.test_models import CHURN_FEATURES, churn_history

ARGS = ("churn-risk-v6", "churn-prevention")
PROGRAM, MODEL = ARGS[1], ARGS[0]


@pytest.fixture(scope="module")
def churn_df() -> pd.DataFrame:
    return churn_history(20_000, seed=3)


def noise_history(n: int, seed: int) -> pd.DataFrame:
    """Features that say nothing about the label: any model's AUC is 0.5 up to noise."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f: rng.normal(size=n) for f in CHURN_FEATURES})
    df["churned_90d"] = rng.uniform(size=n) < 0.3
    return df


def test_a_first_model_that_learned_nothing_is_never_promoted(tmp_path):
    registry = ModelRegistry(tmp_path)
    for seed in range(3):
        trained = train_model(*ARGS, CHURN_FEATURES, noise_history(5_000, seed), "churned_90d")
        assert abs(trained.metrics["roc_auc"] - 0.5) < 0.05
        promoted, reason = registry.promote_if_improved(trained)
        assert not promoted and "does not beat the naive one-feature baseline" in reason
    assert registry.current(PROGRAM, MODEL) is None
    assert registry.promoted_versions(PROGRAM, MODEL) == []
    # What scoring says: never promoted, and why (the last candidate's verdict).
    why = registry.never_promoted_reason(PROGRAM, MODEL)
    assert "no version was ever promoted" in why and "naive one-feature baseline" in why
    assert registry.never_promoted_reason(PROGRAM, "other-model") == f"{PROGRAM}/other-model was never trained"


def test_a_one_feature_model_does_not_beat_the_baseline_but_the_full_model_does(tmp_path, churn_df):
    registry = ModelRegistry(tmp_path)
    alone = train_model(*ARGS, ["support_tickets"], churn_df, "churned_90d")
    assert alone.baseline_feature == "support_tickets"
    assert alone.metrics["baseline_gain"] == pytest.approx(0.0, abs=1e-3)  # a monotone transform of one column
    assert not registry.promote_if_improved(alone)[0]

    full = train_model(*ARGS, CHURN_FEATURES, churn_df, "churned_90d")
    assert full.baseline_feature == "engagement_score"  # the strongest single column of the process
    m = full.metrics
    assert m["roc_auc"] > m["baseline_roc_auc"] + 3 * m["baseline_gain_se"]
    record = registry.decide(full)
    assert record["promoted"] and record["baseline_feature"] == "engagement_score"
    assert record["baseline_roc_auc"] == pytest.approx(m["baseline_roc_auc"])
    assert registry.current(PROGRAM, MODEL).version == full.version
    assert [r["promoted"] for r in registry.history(PROGRAM, MODEL)] == [False, True]


def test_rollback_returns_to_the_previous_promoted_version_and_is_recorded(tmp_path, churn_df):
    registry = ModelRegistry(tmp_path)
    first = train_model(*ARGS, CHURN_FEATURES[:3], churn_df, "churned_90d")
    second = train_model(*ARGS, CHURN_FEATURES, churn_df, "churned_90d")
    rejected = train_model(*ARGS, ["support_tickets"], churn_df, "churned_90d")
    with pytest.raises(LookupError, match="never trained"):
        registry.rollback(PROGRAM, MODEL)
    assert registry.promote_if_improved(first)[0]
    with pytest.raises(LookupError, match="no earlier promoted version"):
        registry.rollback(PROGRAM, MODEL)
    assert registry.promote_if_improved(second)[0]
    assert not registry.promote_if_improved(rejected)[0]

    record = registry.rollback(PROGRAM, MODEL)
    assert (record["action"], record["version"], record["incumbent_version"]) == (
        "rollback",
        first.version,
        second.version,
    )
    assert registry.current(PROGRAM, MODEL).version == first.version
    with pytest.raises(LookupError, match="was never promoted"):
        registry.rollback(PROGRAM, MODEL, to=rejected.version)
    with pytest.raises(ValueError, match="already current"):
        registry.rollback(PROGRAM, MODEL, to=first.version)
    registry.rollback(PROGRAM, MODEL, to=second.version)
    assert registry.current(PROGRAM, MODEL).version == second.version
    actions = [(r["action"], r["version"], r["promoted"]) for r in registry.history(PROGRAM, MODEL)]
    assert actions == [
        ("train", first.version, True),
        ("train", second.version, True),
        ("train", rejected.version, False),
        ("rollback", first.version, True),
        ("rollback", second.version, True),
    ]


def test_the_paired_auc_test_matches_a_bootstrap():
    rng = np.random.default_rng(0)
    n = 4_000
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x1 + 0.5 * x2)))).astype(int)
    a, b = x1 + 0.5 * x2, x1
    gain, se = paired_auc_test(y, a, b)
    assert gain == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    boot = []
    for _ in range(300):
        i = rng.integers(0, n, n)
        boot.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    assert se == pytest.approx(float(np.std(boot)), rel=0.2)
    assert one_sided_p(gain, se) < 0.001 and one_sided_p(0.0, se) == pytest.approx(0.5)
    assert paired_auc_test(y, a, a) == (0.0, 0.0)


def test_auc_against_the_hidden_truth_is_the_expected_auc_over_drawn_outcomes():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.05, 0.95, 3_000)
    scores = truth + rng.normal(0, 0.2, truth.size)
    drawn = [roc_auc_score(rng.uniform(size=truth.size) < truth, scores) for _ in range(200)]
    assert auc_vs_truth(scores, truth) == pytest.approx(float(np.mean(drawn)), abs=0.004)
    assert auc_vs_truth(truth, truth) > auc_vs_truth(scores, truth) > 0.5


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(2)
    train = rng.beta(2, 5, 50_000)
    reference = score_reference(train)
    assert len(reference["edges"]) == 9 and sum(reference["fractions"]) == pytest.approx(1.0)
    assert psi(reference, rng.beta(2, 5, 20_000)) < 0.01
    assert psi(reference, np.clip(rng.beta(2, 5, 20_000) + 0.15, 0, 1)) > 0.2
    with pytest.raises(ValueError, match="no finite scores"):
        psi(reference, np.array([np.nan]))


def _engage(home, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENGAGE_HOME": str(home), "ENGAGE_ENV": "local"}
    engage = Path(sys.executable).parent / "engage"  # the installed console script
    return subprocess.run([str(engage), *args], env=env, capture_output=True, text=True)


def test_rollback_is_one_command(tmp_path, churn_df):
    registry = ModelRegistry(tmp_path / "models")
    first = train_model(*ARGS, CHURN_FEATURES[:3], churn_df, "churned_90d")
    second = train_model(*ARGS, CHURN_FEATURES, churn_df, "churned_90d")
    assert registry.promote_if_improved(first)[0] and registry.promote_if_improved(second)[0]

    listed = _engage(tmp_path, "model", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["model"], row["current"], row["promoted_versions"]) == (MODEL, second.version, 2)
    assert row["roc_auc"] > row["baseline_roc_auc"]

    done = _engage(tmp_path, "model", "rollback", MODEL)
    assert done.returncode == 0, done.stderr
    assert (
        f"rolled back from {second.version} to {first.version}" in done.stdout
        and '"target": "in-process"' in done.stdout
    )
    assert registry.current(PROGRAM, MODEL).version == first.version

    refused = _engage(tmp_path, "model", "rollback", MODEL, "--to", "0123456789abcdef")
    assert refused.returncode == 1 and "0123456789abcdef was never promoted" in refused.stderr
    unknown = _engage(tmp_path, "model", "rollback", "no-such-model")
    assert unknown.returncode == 1 and "name the program with --program (programs with it: none)" in unknown.stderr
    back = _engage(tmp_path, "model", "rollback", MODEL, "--program", PROGRAM, "--to", second.version)
    assert back.returncode == 0 and registry.current(PROGRAM, MODEL).version == second.version


def test_the_training_frame_reads_the_truth_only_when_the_table_has_it(tmp_path):
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.h AS SELECT range AS x, range % 2 = 0 AS y, 0.5 AS p FROM range(20)")
        con.execute("CREATE TABLE marts.no_truth AS SELECT range AS x, range % 2 = 0 AS y FROM range(20)")
    warehouse = DuckDBWarehouse(path=str(path))
    frame, truth = read_training_frame(warehouse, "h", ["x"], "y", "p")
    assert truth == "p" and list(frame.columns) == ["x", "y", "p"] and len(frame) == 20
    frame, truth = read_training_frame(warehouse, "no_truth", ["x"], "y", "p")
    assert truth is None and list(frame.columns) == ["x", "y"]
    with pytest.raises(KeyError, match=r"marts.no_truth lacks column\(s\) z"):
        read_training_frame(warehouse, "no_truth", ["x", "z"], "y", None)


def test_a_retrain_schedule_must_be_a_five_field_cron():
    spec = {"modelId": "m", "endpoint": "sagemaker://m", "features": ["x"], "trainingTable": "t", "label": "y"}
    assert ScoringModel(**spec, retrainSchedule="0 3 * * 0").retrainSchedule == "0 3 * * 0"
    assert ScoringModel(**spec).retrainSchedule is None
    with pytest.raises(ValueError, match="retrainSchedule must be a 5-field cron"):
        ScoringModel(**spec, retrainSchedule="cron(0 3 ? * SUN *)")


def test_a_version_saved_before_linear_json_gets_one_when_it_becomes_current_again(tmp_path, churn_df):
    """A rollback to a version saved without `linear.json` (before it existed) writes it, so the decision runs keep
    scoring without sklearn; the scores are the pickle's."""
    from pathlib import Path

    from engage_assets.domain.models import load_pipeline
    from engage_assets.domain.models.linear import LINEAR_ARTIFACT, load_linear

    registry = ModelRegistry(tmp_path)
    first = train_model(*ARGS, CHURN_FEATURES[:3], churn_df, "churned_90d")
    second = train_model(*ARGS, CHURN_FEATURES, churn_df, "churned_90d")
    assert registry.promote_if_improved(first)[0] and registry.promote_if_improved(second)[0]
    ref = registry.ref(PROGRAM, MODEL, first.version)
    Path(ref.artifact_path).with_name(LINEAR_ARTIFACT).unlink()
    assert load_linear(ref.artifact_path, ref.version) is None
    registry.rollback(PROGRAM, MODEL, to=first.version)
    saved = load_linear(ref.artifact_path, ref.version)
    assert saved is not None
    X = churn_df[list(ref.features)].head(500)
    np.testing.assert_array_equal(saved.score(X), load_pipeline(ref).predict_proba(X)[:, 1])
