"""A snapshot of the Definitions graph, so a changed graph shows up in review.

Asset keys with their deps, group, partitions, kinds and required resources; asset checks; jobs with their
selections; schedules and sensors with their cron and default status; resource keys.  A deliberate change is
recorded with `pytest tests/test_definitions_snapshot.py --snapshot-update` and reviewed in the diff of
`tests/__snapshots__/test_definitions_snapshot.ambr`.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest


def _partitions(defn: dg.PartitionsDefinition | None) -> str | None:
    if defn is None:
        return None
    if isinstance(defn, dg.TimeWindowPartitionsDefinition):
        return f"time-window cron={defn.cron_schedule} start={defn.start.date().isoformat()} tz={defn.timezone}"
    return type(defn).__name__


def graph_of(defs: dg.Definitions) -> dict[str, Any]:
    """The reviewable shape of the definitions (no run-time values: paths and secrets stay out)."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(d.to_user_string() for d in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "kinds": sorted(node.kinds),
            "materializable": node.is_materializable,
            "pools": sorted(getattr(node, "pools", None) or []),
        }
    checks = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys)
    jobs = {}
    for job in sorted(repo.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__ASSET_JOB"):
            continue
        selected = job.asset_layer.executable_asset_keys if job.asset_layer else set()
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in selected),
            "partitioned": job.partitions_def is not None,
        }
    schedules = {
        s.name: {"cron": s.cron_schedule, "job": s.job_name, "default_status": s.default_status.value}
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {"jobs": sorted(t.job_name for t in s.targets), "default_status": s.default_status.value}
        for s in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "asset_checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
        "resources": sorted(defs.resources or {}),
    }


@pytest.fixture(scope="module")
def definitions(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    mp = pytest.MonkeyPatch()
    mp.setenv("ENGAGE_HOME", str(tmp_path_factory.mktemp("home")))
    mp.setenv("ENGAGE_ENV", "local")
    mp.delenv("ENGAGE_PROGRAM_CONFIGS", raising=False)
    try:
        from engage_assets.definitions import build_definitions

        yield build_definitions()
    finally:
        mp.undo()


def test_definitions_graph_matches_the_snapshot(definitions, snapshot):
    assert graph_of(definitions) == snapshot
