"""Churn prevention's Monday 09:00 call assignment (#11, item 8): open call tasks go to the configured account
managers, balancing their open load, never a task twice (both engagement stores, concurrent runs), an assigned task
is listed for its manager and only they may claim it; and the SQLite engagement file migrates to the new schema."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_assets.assets.call_assignment import assign_call_tasks, build_call_assignment
from engage_assets.domain.call_assignment import balance_assignments
from engage_assets.serving.auth import create_api_key
from resources.engagement.sqlite import SCHEMA_V1, SqliteEngagementStore
from tests.test_engagement_store import NOW, store, task  # noqa: F401  (the two-backend fixture)
from tests.test_pipeline_units import CHURN, REFUNDS
from tests.test_serving import api  # noqa: F401  (the serving fixture, both backends)

MANAGERS = CHURN.callAssignment.accountManagers
PID = CHURN.programId
ANA, BEN = "a0a0a0a0a0a0a0a1", "b0b0b0b0b0b0b0b2"  # agents' API key ids


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 60),
    st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True),
    st.dictionaries(st.sampled_from(["a", "b", "c", "d", "x"]), st.integers(0, 10)),
)
def test_balance_assigns_every_task_once_to_the_least_loaded(n, managers, loads):
    tasks = [f"t{i}" for i in range(n)]
    plan = balance_assignments(tasks, managers, loads)
    assert list(plan) == tasks and set(plan.values()) <= set(managers)
    final = {m: loads.get(m, 0) + sum(1 for v in plan.values() if v == m) for m in managers}
    # Water-filling: a manager who got any task ends at most one above the least loaded manager.
    got = {m for m in plan.values()}
    assert all(final[m] <= min(final.values()) + 1 for m in got)
    if len(set(loads.get(m, 0) for m in managers)) == 1:
        assert max(final.values()) - min(final.values()) <= 1


def test_balance_refuses_bad_input():
    with pytest.raises(ValueError, match="no account managers"):
        balance_assignments(["t1"], [], {})
    with pytest.raises(ValueError, match="assigned once"):
        balance_assignments(["t1", "t1"], ["a"], {})


def test_assignment_is_once_and_only_the_assignee_claims(store):  # noqa: F811
    for i in range(4):
        store.create_call_task(task(f"t{i}", customer=f"c{i}", due=NOW + i))
    assert [t["taskId"] for t in store.unassigned_call_tasks(PID)] == ["t0", "t1", "t2", "t3"]
    assert store.assign_call_task("t0", ANA, now=NOW)
    assert not store.assign_call_task("t0", BEN, now=NOW)  # never twice
    assert not store.assign_call_task("nope", BEN, now=NOW)
    assert store.get_call_task("t0")["assignedTo"] == ANA and store.get_call_task("t0")["assignedAt"] == NOW
    assert store.claim_call_task("t0", BEN, 600, now=NOW) is None  # assigned to another
    assert store.claim_call_task("t0", ANA, 600, now=NOW)["claimedBy"] == ANA
    assert store.claim_call_task("t1", "anyone", 600, now=NOW) is not None  # unassigned: any agent, as before
    assert [t["taskId"] for t in store.unassigned_call_tasks(PID)] == ["t2", "t3"]  # claimed ones are not open
    store.assign_call_task("t2", ANA, now=NOW)
    store.assign_call_task("t3", BEN, now=NOW)
    assert store.assigned_open_counts(PID) == {ANA: 2, BEN: 1}
    page, cursor = store.assigned_call_tasks(PID, ANA, limit=1)
    rest, end = store.assigned_call_tasks(PID, ANA, limit=1, cursor=cursor)
    assert [t["taskId"] for t in page + rest] == ["t0", "t2"] and end is None
    store.complete_call_task("t0", ANA, "accepted", now=NOW + 1)
    assert store.assigned_open_counts(PID) == {ANA: 1, BEN: 1}
    assert [t["taskId"] for t in store.assigned_call_tasks(PID, ANA)[0]] == ["t2"]


def test_the_job_balances_and_a_rerun_assigns_nothing_twice(store):  # noqa: F811
    store.create_call_task(task("old", customer="c-old"))
    store.assign_call_task("old", MANAGERS[0], now=NOW)  # a manager already holding one
    for i in range(8):
        store.create_call_task(task(f"t{i}", customer=f"c{i}", due=NOW + i))
    counts = assign_call_tasks(CHURN, store, NOW)
    assert counts["assigned"] == 8 and counts["already_assigned"] == 0
    assert sorted(counts[f"load/{m}"] for m in MANAGERS) == [3, 3, 3]
    again = assign_call_tasks(CHURN, store, NOW + 60)
    assert again["assigned"] == 0
    holders = [store.get_call_task(f"t{i}")["assignedTo"] for i in range(8)]
    assert all(h in MANAGERS for h in holders)


def test_overlapping_runs_never_assign_a_task_twice(tmp_path):
    path = str(tmp_path / "engagement.sqlite")
    seed = SqliteEngagementStore(path=path)
    for i in range(300):
        seed.create_call_task(task(f"t{i:03d}", customer=f"c{i}", due=NOW + i))
    results: list[dict[str, int]] = []
    start = threading.Barrier(3)

    def run() -> None:
        engagement = SqliteEngagementStore(path=path)
        start.wait()
        results.append(assign_call_tasks(CHURN, engagement, NOW))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["assigned"] for r in results) == 300  # each task won by exactly one run
    loads = Counter(seed.get_call_task(f"t{i:03d}")["assignedTo"] for i in range(300))
    assert sum(loads.values()) == 300 and set(loads) <= set(MANAGERS)


def test_the_job_runs_monday_at_nine_by_default_and_only_where_configured(tmp_path):
    job, schedule = build_call_assignment(CHURN)
    assert job.name == "churn_prevention_call_assignment"
    assert schedule.cron_schedule == "0 9 * * 1" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert build_call_assignment(REFUNDS) is None
    engagement = SqliteEngagementStore(path=str(tmp_path / "e.sqlite"))
    engagement.create_call_task(task("t1"))
    config = {"ops": {"churn_prevention__assign_call_tasks": {"config": {"as_of": "2023-11-13T09:00:00"}}}}
    result = job.execute_in_process(run_config=config, resources={"engagement": engagement})
    assert result.success and engagement.get_call_task("t1")["assignedTo"] == MANAGERS[0]


def test_the_api_shows_an_agent_its_assigned_tasks(api):  # noqa: F811
    for manager in (ANA, BEN):
        api.keys[manager] = create_api_key(api.engagement, ["agent"], manager, key_id=manager)[1]
    for i in range(3):
        api.engagement.create_call_task(task(f"t{i}", customer=f"c{i}", due=NOW + i))
    assign_call_tasks(
        CHURN.model_copy(
            update={"callAssignment": CHURN.callAssignment.model_copy(update={"accountManagers": [ANA, BEN]})}
        ),
        api.engagement,
        NOW,
    )
    response = api.get(f"/v1/programs/{PID}/call-tasks/assigned", key=ANA)
    assert response.status_code == 200, response.text
    mine = response.json()["items"]
    theirs = api.get(f"/v1/programs/{PID}/call-tasks/assigned", key=BEN).json()["items"]
    assert [t["taskId"] for t in mine] == ["t0", "t2"] and [t["taskId"] for t in theirs] == ["t1"]
    assert all(t["assignedTo"] == ANA for t in mine)
    refused = api.post("/v1/call-tasks/t1/claim", ANA)
    assert refused.status_code == 409 and "assigned to another agent" in refused.json()["detail"]
    assert api.post("/v1/call-tasks/t1/claim", BEN).status_code == 200
    assert api.get(f"/v1/programs/{PID}/call-tasks/assigned", key="reader").status_code == 403
    assert api.get("/v1/programs/no-such/call-tasks/assigned", key=ANA).status_code == 404


def test_an_engagement_file_of_the_first_schema_migrates(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT INTO call_tasks (task_id, customer_id, program_id, due_key, due_at, state, body)"
        " VALUES ('t1', 'c1', ?, '000000000001#999998#t1', 1, 'open', ?)",
        (
            PID,
            json.dumps({"taskId": "t1", "customerId": "c1", "programId": PID, "offer": {}, "dueAt": 1, "priority": 1}),
        ),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    migrated = SqliteEngagementStore(path=str(path))
    assert migrated.get_call_task("t1")["assignedTo"] is None
    assert migrated.assign_call_task("t1", ANA, now=NOW)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_locally_each_configured_account_manager_gets_an_agent_key_once(tmp_path):
    """The shipped churn config names three account managers: `make run` (ensure_demo_key) gives each an `agent` key
    with the manager's id, written owner-only to ENGAGE_HOME, once; the key authenticates as that manager."""
    from engage_assets.serving.auth import hash_secret, parse_api_key
    from engage_assets.serving.demo_key import ensure_demo_key
    from engage_assets.settings import Settings

    settings = Settings(home=tmp_path)
    ensure_demo_key(settings)
    managers = sorted(CHURN.callAssignment.accountManagers) if CHURN.callAssignment else []
    keys_file = tmp_path / "account_manager_keys"
    lines = keys_file.read_text().split()
    assert managers and lines[0::2] == managers and keys_file.stat().st_mode & 0o777 == 0o600
    engagement = SqliteEngagementStore(path=str(settings.engagement_path))
    for manager, key in zip(lines[0::2], lines[1::2], strict=True):
        key_id, secret = parse_api_key(key) or ("", "")
        record = engagement.get_api_key(manager)
        assert key_id == manager and record and record["keyHash"] == hash_secret(secret)
        assert record["scopes"] == ["agent"]
    (tmp_path / "demo_api_key").unlink()
    ensure_demo_key(settings)  # a new demo key; the managers' keys exist and are not made again
    assert keys_file.read_text().split() == lines
