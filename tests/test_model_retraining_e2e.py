"""Models over time on the real jobs (#11, item 7), on a scale-0.01 generated warehouse in a temporary ENGAGE_HOME:

- every model's retraining job trains, evaluates on held-out rows and records its decision (asset metadata and the
  registry); every model beats the naive one-feature baseline, on the holdout's labels and against the hidden truth
  (the generator's true probability: expected AUC over outcomes drawn from it), the figures printed;
- a batch run evaluates the score-drift check of each model on the partition it scored;
- a model whose training table has no truth column trains all the same (truthColumn is evaluation-only);
- a model that was never promoted stops the scored stage with the last candidate's verdict.
"""

from __future__ import annotations

import socket
from datetime import date

import dagster as dg
import duckdb
import pytest

from engage_assets.demo.datagen import generate
from engage_assets.domain.config import ProgramConfig, load_programs
from engage_assets.domain.models import ModelRegistry
from engage_assets.settings import PROJECT_ROOT
from tests.test_e2e import Platform

END = date(2026, 11, 22)
PARTITION = {"churn_prevention": "2026-11-09"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    home = tmp_path_factory.mktemp("engage_home")
    env = {
        "ENGAGE_HOME": str(home),
        "ENGAGE_WAREHOUSE_PATH": str(home / "warehouse.duckdb"),
        "DBT_TARGET_PATH": str(home / "dbt_target"),
        "ENGAGE_ENV": "local",
        "ENGAGE_SMTP_PORT": str(free_port()),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        generate(home / "warehouse.duckdb", scale=0.01, seed=5, end_date=END)
        p = Platform(home)
        assert p.run("warehouse_build").success, "dbt build failed"
        yield p


def models() -> list[tuple[str, str, str]]:
    """(group, program id, model id) of every model the shipped configs train."""
    programs = load_programs(PROJECT_ROOT / "program_configs")
    return [(p.group, p.programId, m.modelId) for p in programs for m in p.scoringModels]


def retraining_job(group: str, model_id: str, reactive: bool) -> str:
    if reactive:
        return f"{group}_model_retraining"
    return f"{group}_{model_id.replace('-', '_')}_retraining"


def materialization(result: dg.ExecuteInProcessResult) -> dict:
    (mat,) = [
        e.event_specific_data.materialization
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    ]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def test_every_model_is_retrained_by_its_own_job_and_beats_the_naive_baseline(platform):
    programs = {p.programId: p for p in load_programs(PROJECT_ROOT / "program_configs")}
    rows = []
    for group, program_id, model_id in models():
        job = retraining_job(group, model_id, not isinstance(programs[program_id], ProgramConfig))
        result = platform.run(job)
        assert result.success, job
        meta = materialization(result)
        assert meta["promoted"] is True, (model_id, meta["promotion_reason"])
        assert meta["current_version"] == meta["version"]
        m = {k.removeprefix("holdout/"): v for k, v in meta.items() if k.startswith("holdout/")}
        # On the holdout's labels, and against the hidden truth: the model beats its best single column.
        assert m["roc_auc"] > m["baseline_roc_auc"] + 1.645 * m["baseline_gain_se"], model_id
        assert m["truth_auc_ceiling"] >= m["truth_auc_model"] > m["truth_auc_baseline"], model_id
        rows.append((model_id, meta["baseline_feature"], m))
        record = ModelRegistry(platform.home / "models").history(program_id, model_id)[-1]
        assert record["promoted"] and record["baseline_feature"] == meta["baseline_feature"]
    print("\nmodel                     baseline feature            AUC(labels) base   AUC(truth) base  ceiling  n")
    for model_id, feature, m in rows:
        print(
            f"{model_id:25s} {feature:27s} {m['roc_auc']:.3f}  {m['baseline_roc_auc']:.3f}  "
            f"{m['truth_auc_model']:.3f}  {m['truth_auc_baseline']:.3f}  {m['truth_auc_ceiling']:.3f}  "
            f"{m['n_holdout']:.0f}"
        )


def test_a_batch_run_checks_each_models_score_drift(platform):
    assert platform.run("model_retraining").success
    result = platform.run("churn_prevention_batch", PARTITION["churn_prevention"])
    assert result.success
    evaluations = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    for name in ("score_drift_churn_risk_v6", "score_drift_offer_effectiveness_v2"):
        check = evaluations[name]
        meta = {k: getattr(v, "value", v) for k, v in check.metadata.items()}
        assert meta["partition"] == PARTITION["churn_prevention"] and meta["rows"] > 0
        assert meta["psi"] >= 0 and check.passed == (meta["psi"] <= 0.25)
        print(f"\n{name}: PSI {meta['psi']:.3f} over {meta['rows']} rows")


def test_truth_column_is_evaluation_only(platform):
    with duckdb.connect(str(platform.home / "warehouse.duckdb")) as con:
        con.execute("ALTER TABLE marts.training_churn_outcomes DROP COLUMN true_p_churn")
    result = platform.run("churn_prevention_churn_risk_v6_retraining")
    assert result.success
    meta = materialization(result)
    assert "holdout/roc_auc" in meta and not any(k.startswith("holdout/truth") for k in meta)


def test_a_model_never_promoted_stops_scoring_with_the_reason(platform, tmp_path):
    model_dir = platform.home / "models" / "win-back-campaigns" / "offer-effectiveness-v2"
    model_dir.rename(tmp_path / "aside")
    try:
        assert ModelRegistry(platform.home / "models").current("win-back-campaigns", "offer-effectiveness-v2") is None
        result = platform.run("win_back_batch", "2026-10-05")
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        text = str(failure.event_specific_data.error)
        assert "'offer-effectiveness-v2' has no promoted version" in text
        assert "win-back-campaigns/offer-effectiveness-v2 was never trained" in text
    finally:
        (tmp_path / "aside").rename(model_dir)
