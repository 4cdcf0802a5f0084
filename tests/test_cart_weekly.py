"""The abandoned-cart program's weekly jobs: the candidate cleanup (purge what a backend does not sweep, fail when
expired candidates outlive the grace period) on both stores, and the weekly model retraining in the definitions."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from engage_assets.assets.reactive.weekly import build_candidate_cleanup, build_model_retraining, cleanup_candidates
from engage_assets.domain.config import ReactiveProgram, load_program
from engage_assets.settings import PROJECT_ROOT
from resources.dedup.sqlite import SqliteDedupStore
from resources.store.sqlite import SqliteCandidateStore
from tests.test_store_contract import DAY, NOW, make_dynamodb, rec

PROGRAM = load_program(PROJECT_ROOT / "program_configs" / "abandoned_cart_recovery.yaml")
assert isinstance(PROGRAM, ReactiveProgram)
PID = PROGRAM.programId


def seed(store) -> None:
    """Three candidates: live, expired a day ago, expired five days ago."""
    store.replace_partition(
        PID, "k1", [rec("live", program=PID, partition="k1", expires_at=NOW + DAY)], now=NOW - DAY * 9
    )
    store.replace_partition(
        PID, "k2", [rec("day", program=PID, partition="k2", expires_at=NOW - DAY)], now=NOW - DAY * 9
    )
    store.replace_partition(
        PID, "k3", [rec("old", program=PID, partition="k3", expires_at=NOW - 5 * DAY)], now=NOW - DAY * 9
    )


def test_sqlite_purges_expired_candidates_and_claims(tmp_path):
    store = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    dedup = SqliteDedupStore(path=str(tmp_path / "reactive.sqlite"))
    seed(store)
    dedup.claim(["gone", "kept"], 10, NOW - 100)  # expires at NOW - 90
    dedup.claim(["fresh"], DAY, NOW)
    assert store.expired_present(PID, NOW) == 2
    counts = cleanup_candidates(PID, store, dedup, NOW, grace_hours=48)
    assert counts == {"candidates_purged": 2, "claims_purged": 2, "expired_still_stored": 0}
    assert store.expired_present(PID, NOW) == 0 and store.get("live", PID, now=NOW) is not None
    assert dedup.claim(["fresh"], DAY, NOW) == set()  # a live claim survives the purge


def test_dynamodb_leaves_deletion_to_ttl_and_reports_what_outlived_the_grace(moto_endpoint, tmp_path):
    store = make_dynamodb(moto_endpoint)
    seed(store)
    counts = cleanup_candidates(PID, store, SqliteDedupStore(path=str(tmp_path / "r.sqlite")), NOW, grace_hours=48)
    # moto has no TTL sweeper: both expired items are still there; only the five-day-old one is over 48 h
    assert counts == {"candidates_purged": 0, "claims_purged": 0, "expired_still_stored": 1}


def test_the_cleanup_job_observes_the_store_and_fails_when_the_sweeper_is_behind(moto_endpoint, tmp_path):
    job, schedule = build_candidate_cleanup(PROGRAM)
    assert schedule.cron_schedule == "0 1 * * 0" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    as_of = datetime.fromtimestamp(NOW, UTC).isoformat()
    sqlite_store = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    seed(sqlite_store)
    dedup = SqliteDedupStore(path=str(tmp_path / "reactive.sqlite"))
    config = {"ops": {f"{PROGRAM.group}__cleanup_candidates": {"config": {"as_of": as_of}}}}
    ok = job.execute_in_process(run_config=config, resources={"store": sqlite_store, "dedup": dedup})
    assert ok.success
    (obs,) = [
        e.asset_observation_data.asset_observation for e in ok.all_events if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert obs.asset_key == dg.AssetKey([PROGRAM.group, "stored_candidates"])
    assert obs.metadata["candidates_purged"].value == 2
    dynamo = make_dynamodb(moto_endpoint)
    seed(dynamo)
    behind = job.execute_in_process(
        run_config=config, resources={"store": dynamo, "dedup": dedup}, raise_on_error=False
    )
    assert not behind.success
    assert "expiry sweeper is behind" in str(behind.failure_data_for_node(f"{PROGRAM.group}__cleanup_candidates").error)


@pytest.mark.parametrize("enabled", [True, False])
def test_weekly_retraining_selects_the_intent_model_on_sunday_at_three(enabled):
    program = PROGRAM.model_copy(update={"enabled": enabled})
    job, schedule = build_model_retraining(program)
    assert schedule.cron_schedule == "0 3 * * 0" and schedule.execution_timezone == "UTC"
    expected = dg.DefaultScheduleStatus.RUNNING if enabled else dg.DefaultScheduleStatus.STOPPED
    assert schedule.default_status == expected
    assert job.name == f"{PROGRAM.group}_model_retraining"
