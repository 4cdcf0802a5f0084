"""`dagster definitions validate` over the real workspace: passes as shipped, fails on a bad program config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).parent / "dagster")


def _validate(tmp_path: Path, configs: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENGAGE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path)}
    if configs is not None:
        env["ENGAGE_PROGRAM_CONFIGS"] = str(configs)
    return subprocess.run(
        [DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_workspace_validates(tmp_path):
    result = _validate(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_bad_program_config_fails_validation_with_file_and_field(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "program_configs", configs)
    path = configs / "churn_prevention.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["filterChain"][1]["parameters"]["minSignalsRequired"] = "two"
    path.write_text(yaml.safe_dump(doc))
    result = _validate(tmp_path, configs)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "churn_prevention.yaml" in out and "minSignalsRequired" in out


def test_the_reactive_program_builds(tmp_path, monkeypatch):
    """The shipped abandoned-cart program (eventSources) is built, not refused: its assets, jobs and sensors."""
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path / "home"))
    from engage_assets.definitions import build_definitions

    repo = build_definitions().get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {
        "abandoned_cart_recovery/purchase_intent_v4_model",
        "abandoned_cart_recovery/source_candidates",
        "abandoned_cart_recovery/touch_plan",
        "abandoned_cart_recovery/deliveries",
    } <= keys
    assert {"abandoned_cart_recovery_decide", "abandoned_cart_recovery_deliver"} <= {
        j.name for j in repo.get_all_jobs()
    }
    sensors = {s.name: s for s in repo.sensor_defs}
    assert sensors["abandoned_cart_recovery_cart_events"].default_status == dg.DefaultSensorStatus.RUNNING
    assert "abandoned_cart_recovery_due_touches" in sensors
