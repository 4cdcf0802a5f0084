"""The spec's Scheduled Jobs beside each batch program's batch (#11, item 8): the weekly cleanup of expired candidates
with its verification (the abandoned-cart program's job, shared), and churn prevention's call assignment, each with
its schedule running by default; a bad `callAssignment` fails at load."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from engage_assets.assets.cleanup import build_candidate_cleanup
from engage_assets.assets.program import build_program
from engage_assets.domain.config import ConfigError, load_program
from resources.store.sqlite import SqliteCandidateStore
from tests.test_pipeline_units import CHURN, PROGRAMS, REFUNDS
from tests.test_store_contract import DAY, NOW, make_dynamodb, rec

ROOT = Path(__file__).resolve().parent.parent
RUNNING = dg.DefaultScheduleStatus.RUNNING


def seed(store, program_id: str) -> None:
    """Live, expired a day ago, expired five days ago."""
    for key, expires in (("live", NOW + DAY), ("day", NOW - DAY), ("old", NOW - 5 * DAY)):
        store.replace_partition(
            program_id, key, [rec(key, program=program_id, partition=key, expires_at=expires)], now=NOW - 9 * DAY
        )


def run_cleanup(job, group: str, store):
    as_of = datetime.fromtimestamp(NOW, UTC).isoformat()
    config = {"ops": {f"{group}__cleanup_candidates": {"config": {"as_of": as_of}}}}
    return job.execute_in_process(run_config=config, resources={"store": store}, raise_on_error=False)


def test_a_batch_programs_cleanup_purges_verifies_and_needs_no_dedup_store(tmp_path, moto_endpoint):
    job, schedule = build_candidate_cleanup(REFUNDS)
    assert job.name == "proactive_refunds_candidate_cleanup"
    assert schedule.cron_schedule == "0 1 * * 0" and schedule.default_status == RUNNING  # Sunday 01:00 UTC
    store = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    seed(store, REFUNDS.programId)
    ok = run_cleanup(job, REFUNDS.group, store)
    assert ok.success and store.expired_present(REFUNDS.programId, NOW) == 0
    (obs,) = [
        e.asset_observation_data.asset_observation for e in ok.all_events if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert obs.asset_key == dg.AssetKey(["proactive_refunds", "stored_candidates"])
    assert obs.metadata["candidates_purged"].value == 2 and "claims_purged" not in obs.metadata
    # DynamoDB leaves deletion to its TTL sweeper (moto has none): the verification fails the run.
    dynamo = make_dynamodb(moto_endpoint)
    seed(dynamo, REFUNDS.programId)
    behind = run_cleanup(job, REFUNDS.group, dynamo)
    assert not behind.success
    assert "sweeper is behind" in str(behind.failure_data_for_node("proactive_refunds__cleanup_candidates").error)


def test_every_batch_program_gets_its_cleanup_and_churn_its_call_assignment():
    for program in (p for p in PROGRAMS.values() if hasattr(p, "batchSchedule")):
        defs = build_program(program)
        jobs = {j.name for j in defs.jobs}
        schedules = {s.name: s for s in defs.schedules}
        assert f"{program.group}_candidate_cleanup" in jobs
        assert schedules[f"{program.group}_candidate_cleanup_schedule"].default_status == RUNNING
        has_assignment = f"{program.group}_call_assignment_schedule" in schedules
        assert has_assignment == (program is CHURN)
    churn = {s.name: s for s in build_program(CHURN).schedules}["churn_prevention_call_assignment_schedule"]
    assert churn.cron_schedule == "0 9 * * 1" and churn.default_status == RUNNING


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"accountManagers": ["Ana"]}, "API key ids"),
        ({"accountManagers": ["acc0000000000001", "acc0000000000001"]}, "unique"),
        ({"accountManagers": []}, "at least 1"),
        ({"schedule": "0 9 * *"}, "5-field cron"),
        ({"schedule": "0 25 * * 1"}, "not a valid cron"),
    ],
)
def test_a_bad_call_assignment_fails_at_load(tmp_path, change, message):
    doc = yaml.safe_load((ROOT / "program_configs" / "churn_prevention.yaml").read_text())
    doc["callAssignment"].update(change)
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError, match=message):
        load_program(path)


def test_call_assignment_needs_a_phone_channel(tmp_path):
    doc = yaml.safe_load((ROOT / "program_configs" / "churn_prevention.yaml").read_text())
    doc["channels"] = [c for c in doc["channels"] if c["type"] != "phone"]
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError, match="needs an enabled phone channel"):
        load_program(path)
