"""Defaults that run (#13, item 1): a fresh deployment runs every sensor and every enabled program's schedule
without a click; a program with `enabled: false` runs nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from engage_assets.assets.program import build_program
from engage_assets.domain.config import ProgramConfig, load_program, load_programs

ROOT = Path(__file__).resolve().parent.parent
RUNNING_SENSOR = dg.DefaultSensorStatus.RUNNING
RUNNING, STOPPED = dg.DefaultScheduleStatus.RUNNING, dg.DefaultScheduleStatus.STOPPED


def _repo(monkeypatch: pytest.MonkeyPatch, home: Path, configs: Path) -> dg.RepositoryDefinition:
    monkeypatch.setenv("ENGAGE_HOME", str(home))
    monkeypatch.setenv("ENGAGE_ENV", "local")
    monkeypatch.setenv("ENGAGE_PROGRAM_CONFIGS", str(configs))
    from engage_assets.definitions import build_definitions

    return build_definitions().get_repository_def()


def _with_win_back_disabled(tmp_path: Path) -> Path:
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "program_configs", configs)
    path = configs / "win_back.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["enabled"] = False
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return configs


def test_every_sensor_and_every_enabled_programs_schedule_run_by_default(tmp_path, monkeypatch):
    repo = _repo(monkeypatch, tmp_path / "home", ROOT / "program_configs")
    sensors = {s.name: s.default_status for s in repo.sensor_defs}
    assert {"engage_run_failure_alerts", "win_back_due_touches", "abandoned_cart_recovery_cart_events"} <= set(sensors)
    assert sensors == dict.fromkeys(sensors, RUNNING_SENSOR)
    schedules = {s.name: s.default_status for s in repo.schedule_defs}
    programs = load_programs(ROOT / "program_configs")
    batch = [p for p in programs if isinstance(p, ProgramConfig)]
    assert len(batch) == 3 and all(p.enabled for p in programs)
    for p in batch:
        assert schedules[f"{p.group}_schedule"] == RUNNING, p.programId
    assert schedules["abandoned_cart_recovery_cart_expiry_schedule"] == RUNNING
    # the spec's Scheduled Jobs: every batch program's weekly cleanup, churn prevention's Monday call assignment
    for p in batch:
        assert schedules[f"{p.group}_candidate_cleanup_schedule"] == RUNNING, p.programId
    assert schedules["churn_prevention_call_assignment_schedule"] == RUNNING
    # the deployment's own jobs too: the warehouse the 2 AM programs read, the models, erasure, the cart's weeklies
    assert schedules == dict.fromkeys(schedules, RUNNING)


def test_a_disabled_program_runs_nothing(tmp_path, monkeypatch):
    repo = _repo(monkeypatch, tmp_path / "home", _with_win_back_disabled(tmp_path))
    schedules = {s.name: s.default_status for s in repo.schedule_defs}
    sensors = {s.name: s.default_status for s in repo.sensor_defs}
    # A disabled program is not loaded: no schedule, no due-touch sensor, nothing that could run.
    assert "win_back_schedule" not in schedules and "win_back_due_touches" not in sensors
    assert schedules["churn_prevention_schedule"] == schedules["proactive_refunds_schedule"] == RUNNING
    assert set(sensors.values()) == {RUNNING_SENSOR}
    # Built on its own (what the factory makes of it), its schedule is stopped.
    disabled = load_program(tmp_path / "configs" / "win_back.yaml")
    assert isinstance(disabled, ProgramConfig) and not disabled.enabled
    stopped = {s.name: s.default_status for s in build_program(disabled).schedules}
    # the batch schedule and one retraining schedule per model, on the spec's quarterly cadence (#11, item 7)
    retraining = {
        "win_back_win_back_likelihood_v3_retraining_schedule",
        "win_back_offer_effectiveness_v2_retraining_schedule",
    }
    assert {"win_back_schedule", *retraining} <= set(stopped)
    assert set(stopped.values()) == {STOPPED}
    enabled = build_program(disabled.model_copy(update={"enabled": True})).schedules
    assert {s.default_status for s in enabled} == {RUNNING}
    assert {s.cron_schedule for s in enabled if s.name in retraining} == {"0 3 * 1,4,7,10 1#1"}


def test_the_local_instance_marks_dead_runs_failed(tmp_path):
    """Run monitoring is on in the dagster.yaml `make setup` installs: a run whose process died does not stay
    STARTED (which would hold the due-touch sensor's retry and the batch run queue for ever)."""
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert instance.run_monitoring_enabled and instance.run_monitoring_start_timeout_seconds <= 300
    finally:
        instance.dispose()
