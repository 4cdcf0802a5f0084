"""`engage run`'s scope (#12, item 5): one warehouse setting honoured by every part, the generator never over or
beside a user's warehouse, `--program P --partition D` checked against each program's cadence before anything runs."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from dagster_dbt import DbtCliResource

from engage_assets.cli import main
from engage_assets.cli.run_scope import RunScopeError, partition_problem, run_scope, should_generate
from engage_assets.demo.datagen.load import NotAGeneratedWarehouse, is_generated, write_raw
from engage_assets.domain.config import ProgramConfig, load_programs
from engage_assets.settings import PROJECT_ROOT, Settings
from resources.by_env import build_resources
from resources.dbt import dbt_resource

PROGRAMS = load_programs(PROJECT_ROOT / "program_configs")
BY_ID = {p.programId: p for p in PROGRAMS}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def batch(program_id: str) -> ProgramConfig:
    program = BY_ID[program_id]
    assert isinstance(program, ProgramConfig)
    return program


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean environment in a temporary working directory: ENGAGE_HOME there, no warehouse setting."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ENGAGE_WAREHOUSE_PATH", raising=False)
    monkeypatch.delenv("ENGAGE_PROGRAM_CONFIGS", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path


# ---- one warehouse setting ------------------------------------------------------------------------------------


def test_a_relative_warehouse_path_is_one_absolute_file_for_every_part(env, monkeypatch):
    monkeypatch.setenv("ENGAGE_WAREHOUSE_PATH", "mine/shop.duckdb")
    settings = Settings()
    assert settings.warehouse_path == env / "mine" / "shop.duckdb"
    assert not settings.warehouse_is_default
    resources = build_resources(settings)
    assert resources["warehouse"].path == str(env / "mine" / "shop.duckdb")
    assert resources["exports"].warehouse_path == str(env / "mine" / "shop.duckdb")
    # dbt runs in dbt_project/: it gets the absolute path, never the relative one.
    assert settings.dbt_environment()["ENGAGE_WAREHOUSE_PATH"] == str(env / "mine" / "shop.duckdb")


def test_the_dbt_resource_hands_dbt_the_settings_warehouse(env, monkeypatch):
    """Every dbt invocation (a `dagster asset materialize`, the UI, `engage run`) sees the absolute path, and the
    process's environment is left as it was."""
    seen: dict[str, str] = {}
    monkeypatch.setattr(DbtCliResource, "cli", lambda self, args, **kw: seen.update(os.environ))
    monkeypatch.setenv("ENGAGE_WAREHOUSE_PATH", "mine/shop.duckdb")
    dbt_resource("local").cli(["build"])
    assert seen["ENGAGE_WAREHOUSE_PATH"] == str(env / "mine" / "shop.duckdb")
    assert os.environ["ENGAGE_WAREHOUSE_PATH"] == "mine/shop.duckdb"
    # Unset, dbt gets the default in ENGAGE_HOME, absolute too.
    monkeypatch.delenv("ENGAGE_WAREHOUSE_PATH")
    dbt_resource("local").cli(["build"])
    assert seen["ENGAGE_WAREHOUSE_PATH"] == str(env / "home" / "warehouse.duckdb")
    assert "ENGAGE_WAREHOUSE_PATH" not in os.environ


def test_the_demo_warehouse_is_generated_only_at_the_default_location(env, monkeypatch):
    settings = Settings()
    assert settings.warehouse_is_default
    assert should_generate(settings, regenerate=False)  # missing: generated
    write_raw(settings.warehouse_path, {}, datetime(2026, 11, 1))  # a demo warehouse written before
    assert not should_generate(settings, regenerate=False)  # present: used as it is
    assert should_generate(settings, regenerate=True)
    # One's own warehouse put at the default location is used, and never regenerated over.
    settings.warehouse_path.unlink()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("CREATE TABLE mine AS SELECT 1 AS x")
    assert not should_generate(settings, regenerate=False)
    with pytest.raises(RunScopeError, match="--regenerate: .* never overwritten"):
        should_generate(settings, regenerate=True)
    # The variable naming that same file is still the default.
    monkeypatch.setenv("ENGAGE_WAREHOUSE_PATH", str(settings.warehouse_path))
    assert Settings().warehouse_is_default


def test_a_warehouse_named_by_the_setting_is_never_generated(env, monkeypatch):
    monkeypatch.setenv("ENGAGE_WAREHOUSE_PATH", str(env / "mine.duckdb"))
    with pytest.raises(RunScopeError, match="ENGAGE_WAREHOUSE_PATH names .*mine.duckdb, which does not exist"):
        should_generate(Settings(), regenerate=False)
    (env / "mine.duckdb").touch()
    assert not should_generate(Settings(), regenerate=False)
    with pytest.raises(RunScopeError, match="--regenerate writes the demo warehouse"):
        should_generate(Settings(), regenerate=True)


def test_engage_run_refuses_before_generating_anything(env, monkeypatch, capsys):
    monkeypatch.setenv("ENGAGE_WAREHOUSE_PATH", str(env / "typo.duckdb"))
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--program", "proactive-refunds"])
    assert exit_.value.code == 2
    assert "typo.duckdb, which does not exist" in capsys.readouterr().err
    assert not (env / "typo.duckdb").exists() and not (env / "home" / "warehouse.duckdb").exists()


def test_the_generator_never_writes_into_a_warehouse_it_did_not_write(env):
    own = env / "own.duckdb"
    with duckdb.connect(str(own)) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.customers AS SELECT 'C1' AS customer_id")
    with pytest.raises(NotAGeneratedWarehouse, match="never overwritten"):
        write_raw(own, {}, datetime(2026, 11, 1))
    with duckdb.connect(str(own), read_only=True) as con:
        assert con.execute("SELECT customer_id FROM raw.customers").fetchall() == [("C1",)]
    # A file it wrote carries its mark, and may be regenerated.
    demo = env / "demo.duckdb"
    write_raw(demo, {}, datetime(2026, 11, 1))
    assert is_generated(demo) and not is_generated(own)
    write_raw(demo, {}, datetime(2026, 11, 2))


# ---- --program P --partition D ----------------------------------------------------------------------------------


def test_a_partition_off_a_programs_cadence_names_the_program_and_the_nearest_partitions():
    monthly = partition_problem(batch("win-back-campaigns"), "2026-10-15", NOW)
    assert monthly is not None
    assert "'win-back-campaigns'" in monthly and "2026-10-15 is not one of its partitions" in monthly
    assert "the nearest are 2026-10-05 and 2026-11-02" in monthly and "MON#1" in monthly
    weekly = partition_problem(batch("churn-prevention"), "2026-11-12", NOW)
    assert weekly is not None and "the nearest are 2026-11-09 and 2026-11-16" in weekly
    assert partition_problem(batch("win-back-campaigns"), "2026-10-05", NOW) is None
    assert partition_problem(batch("churn-prevention"), "2026-11-16", NOW) is None
    assert partition_problem(batch("proactive-refunds"), "2026-11-12", NOW) is None


def test_a_partition_that_cannot_run_says_why():
    refunds = batch("proactive-refunds")
    assert "not a date" in (partition_problem(refunds, "yesterday", NOW) or "")
    assert "before its first partition (partitionsStart 2026-09-01)" in (
        partition_problem(refunds, "2026-08-31", NOW) or ""
    )
    # November's first-Monday partition of win-back ends on the first Monday of December: not complete on Nov 30.
    incomplete = partition_problem(batch("win-back-campaigns"), "2026-11-02", NOW) or ""
    assert "not complete yet" in incomplete and "2026-12-07" in incomplete


def test_run_scope_checks_every_program_it_runs():
    with pytest.raises(RunScopeError) as error:
        run_scope(PROGRAMS, [], "2026-10-15")
    text = str(error.value)
    assert "'win-back-campaigns'" in text and "'churn-prevention'" in text and "--program P" in text
    assert "'proactive-refunds'" not in text  # a daily program takes any day
    scope = run_scope(PROGRAMS, ["proactive-refunds"], "2026-10-15")
    assert [p.programId for p in scope.batch] == ["proactive-refunds"] and scope.reactive == []
    assert scope.partitions == {"proactive-refunds": "2026-10-15"} and scope.groups == ["proactive_refunds"]
    by_group = run_scope(PROGRAMS, ["win_back"], None)
    assert [p.programId for p in by_group.batch] == ["win-back-campaigns"]
    with pytest.raises(RunScopeError, match="no program 'win-bak'.*the programs are"):
        run_scope(PROGRAMS, ["win-bak"], None)
    with pytest.raises(RunScopeError, match="'abandoned-cart-recovery' is reactive"):
        run_scope(PROGRAMS, ["abandoned-cart-recovery"], "2026-10-15")


def test_engage_run_with_a_partition_off_cadence_fails_before_running_anything(env, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--program", "win-back-campaigns", "--partition", "2026-10-15"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "program 'win-back-campaigns'" in err and "2026-10-15 is not one of its partitions" in err
    assert not Path(env / "home" / "warehouse.duckdb").exists()  # nothing generated, built or run


def test_engage_run_with_a_bad_program_config_names_the_file_and_runs_nothing(env, monkeypatch, capsys):
    configs = env / "configs"
    configs.mkdir()
    (configs / "broken.yaml").write_text(
        (PROJECT_ROOT / "program_configs" / "win_back.yaml").read_text() + "\nbogus: 1\n"
    )
    monkeypatch.setenv("ENGAGE_PROGRAM_CONFIGS", str(configs))
    with pytest.raises(SystemExit) as exit_:
        main(["run"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "broken.yaml: invalid program config" in err and "bogus" in err
    assert not (env / "home" / "warehouse.duckdb").exists()
