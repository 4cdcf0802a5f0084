"""One contract for both engagement store backends: SQLite (a file under tmp_path) and DynamoDB (moto server)."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import uuid
from typing import Any

import pytest

from resources.engagement.base import EngagementStore
from resources.engagement.dynamodb import DynamoDbEngagementStore
from resources.engagement.sqlite import SqliteEngagementStore

NOW = 1_700_000_000
HOUR = 3600


def message(mid: str, customer: str = "c1", **kw: Any) -> dict[str, Any]:
    m = {
        "messageId": mid,
        "customerId": customer,
        "programId": "churn-prevention",
        "messageType": "retention-offer",
        "templateId": "retention-in-app-v1",
        "offer": {"discount": 30, "valueUsd": 12.5},
        "score": 0.71,
        "displayFrom": NOW - HOUR,
        "displayUntil": NOW + 7 * 24 * HOUR,
    }
    return m | kw


def task(tid: str, customer: str = "c1", due: int = NOW + 24 * HOUR, priority: int = 1, **kw: Any) -> dict[str, Any]:
    t = {
        "taskId": tid,
        "customerId": customer,
        "programId": "churn-prevention",
        "segment": "critical",
        "scriptId": "retention-call-v2",
        "callType": "account-manager",
        "score": 0.91,
        "offer": {"discount": 50},
        "dueAt": due,
        "priority": priority,
    }
    return t | kw


def make_dynamo(endpoint: str) -> DynamoDbEngagementStore:
    s = DynamoDbEngagementStore(
        table_name=f"engagement-{uuid.uuid4().hex[:12]}", region_name="us-east-1", endpoint_url=endpoint
    )
    s.create_table()
    return s


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path) -> EngagementStore:
    if request.param == "sqlite":
        s = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
        yield s
        s.close()
    else:
        yield make_dynamo(request.getfixturevalue("moto_endpoint"))


def test_inbox_insert_is_idempotent_by_message_id(store):
    assert store.upsert_inbox_message(message("m1")) is True
    changed = message("m1", templateId="other", displayUntil=NOW + 1)
    assert store.upsert_inbox_message(changed) is False  # second call: nothing changes
    got = store.get_inbox_message("m1")
    assert got["templateId"] == "retention-in-app-v1" and got["state"] == "active"
    assert got["offer"] == {"discount": 30, "valueUsd": 12.5} and got["score"] == 0.71


def test_inbox_window_and_states(store):
    store.upsert_inbox_message(message("live"))
    store.upsert_inbox_message(message("future", displayFrom=NOW + HOUR))
    store.upsert_inbox_message(message("ended", displayFrom=NOW - 9 * HOUR, displayUntil=NOW))
    store.upsert_inbox_message(message("other", customer="c2"))
    assert [m["messageId"] for m in store.inbox_messages("c1", now=NOW)] == ["live"]
    assert {m["messageId"] for m in store.inbox_messages("c1", now=NOW + 2 * HOUR)} == {"live", "future"}

    seen = store.set_inbox_state("c1", "live", "seen", now=NOW + 5)
    assert seen["state"] == "seen" and seen["updatedAt"] == NOW + 5
    assert [m["state"] for m in store.inbox_messages("c1", now=NOW)] == ["seen"]  # seen still displays
    assert store.set_inbox_state("c1", "live", "dismissed", now=NOW + 6)["state"] == "dismissed"
    assert store.inbox_messages("c1", now=NOW) == []
    assert store.set_inbox_state("c1", "live", "seen", now=NOW + 7)["state"] == "dismissed"  # final
    # Another customer's message is not reachable through this customer.
    assert store.set_inbox_state("c1", "other", "seen") is None
    assert store.get_inbox_message("other")["state"] == "active"
    assert store.set_inbox_state("c1", "nope", "seen") is None
    with pytest.raises(ValueError):
        store.set_inbox_state("c1", "live", "active")


def test_call_task_idempotent_and_due_order(store):
    assert store.create_call_task(task("t1", due=NOW + 48 * HOUR)) is True
    assert store.create_call_task(task("t1", due=NOW)) is False
    assert store.get_call_task("t1")["dueAt"] == NOW + 48 * HOUR
    store.create_call_task(task("t2", due=NOW + 24 * HOUR, priority=1))
    store.create_call_task(task("t3", due=NOW + 24 * HOUR, priority=5))  # same due, higher priority first
    store.create_call_task(task("w1", due=NOW, programId="win-back-campaigns"))
    tasks, cursor = store.due_call_tasks("churn-prevention", now=NOW)
    assert [t["taskId"] for t in tasks] == ["t3", "t2", "t1"] and cursor is None
    assert all(t["state"] == "open" for t in tasks)
    tasks, _ = store.due_call_tasks("churn-prevention", due_before=NOW + 24 * HOUR, now=NOW)
    assert [t["taskId"] for t in tasks] == ["t3", "t2"]
    # Pagination: pages of one follow the same order, with and without a due bound.
    for bound in (None, NOW + 24 * HOUR):
        seen, cursor = [], None
        while True:
            page, cursor = store.due_call_tasks("churn-prevention", due_before=bound, limit=1, cursor=cursor, now=NOW)
            seen += [t["taskId"] for t in page]
            if cursor is None:
                break
        assert seen == (["t3", "t2", "t1"] if bound is None else ["t3", "t2"])
    with pytest.raises(ValueError):
        store.due_call_tasks("win-back-campaigns", cursor=store.due_call_tasks("churn-prevention", limit=1)[1])


def test_claim_expiry_and_completion(store):
    store.create_call_task(task("t1"))
    claimed = store.claim_call_task("t1", "agent-a", 600, now=NOW)
    assert (
        claimed["state"] == "claimed" and claimed["claimedBy"] == "agent-a" and claimed["claimExpiresAt"] == NOW + 600
    )
    assert store.claim_call_task("t1", "agent-b", 600, now=NOW + 599) is None  # held
    assert store.due_call_tasks("churn-prevention", now=NOW + 10)[0] == []  # not claimable while held
    assert store.complete_call_task("t1", "agent-b", "accepted", now=NOW + 10) is None  # not the holder
    # The claim expires: the task is listed again and another agent may take it; the first can no longer complete.
    assert [t["taskId"] for t in store.due_call_tasks("churn-prevention", now=NOW + 600)[0]] == ["t1"]
    assert store.claim_call_task("t1", "agent-b", 600, now=NOW + 600)["claimedBy"] == "agent-b"
    assert store.complete_call_task("t1", "agent-a", "accepted", now=NOW + 601) is None
    done = store.complete_call_task("t1", "agent-b", "callback", now=NOW + 700)
    assert done["state"] == "completed" and done["outcome"] == "callback" and done["completedAt"] == NOW + 700
    assert store.claim_call_task("t1", "agent-a", 600, now=NOW + 10_000) is None  # completed is final
    assert store.due_call_tasks("churn-prevention", now=NOW + 10_000)[0] == []
    assert store.claim_call_task("missing", "agent-a", 600, now=NOW) is None
    with pytest.raises(ValueError):
        store.complete_call_task("t1", "agent-b", "maybe")


def test_concurrent_claims_have_one_winner(store, request):
    store.create_call_task(task("hot"))
    winners: list[str] = []
    barrier = threading.Barrier(8)
    # moto's server checks a ConditionExpression and writes in two steps, so truly simultaneous claims can both
    # pass there (DynamoDB itself applies them atomically): against moto the agents take turns, which still
    # proves the condition expression lets exactly one claim through. SQLite gets the real race.
    turns = threading.Lock() if "dynamodb" in request.node.callspec.id else contextlib.nullcontext()

    def agent(n: int) -> None:
        barrier.wait()
        with turns:
            if store.claim_call_task("hot", f"agent-{n}", 600) is not None:
                winners.append(f"agent-{n}")

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and store.get_call_task("hot")["claimedBy"] == winners[0]


def _claim_in_process(path: str, n: int, start, results) -> None:
    s = SqliteEngagementStore(path=path)
    start.wait()
    results.put((n, s.claim_call_task("hot", f"proc-{n}", 600) is not None))


def test_sqlite_claims_from_several_processes_have_one_winner(tmp_path):
    path = str(tmp_path / "engagement.sqlite")
    SqliteEngagementStore(path=path).create_call_task(task("hot"))
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(path, n, start, results)) for n in range(4)]
    for p in procs:
        p.start()
    start.set()
    outcome = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(won for _, won in outcome) == 1


def test_gdpr_delete_removes_and_blocks(store):
    store.upsert_inbox_message(message("m1"))
    store.upsert_inbox_message(message("m2"))
    store.upsert_inbox_message(message("keep", customer="c2"))
    store.create_call_task(task("t1"))
    assert store.is_deleted("c1") is False
    assert store.delete_customer("c1", now=NOW) == {"inboxMessages": 2, "callTasks": 1}
    assert store.is_deleted("c1") and not store.is_deleted("c2")
    assert store.deleted_customers() == {"c1"}
    assert store.deleted_among(["c2", "c1", "c1", "zz"]) == {"c1"} and store.deleted_among([]) == set()
    assert store.inbox_messages("c1", now=NOW) == [] and store.get_call_task("t1") is None
    assert [m["messageId"] for m in store.inbox_messages("c2", now=NOW)] == ["keep"]
    # Later deliveries for a deleted customer are refused.
    assert store.upsert_inbox_message(message("m3")) is False and store.get_inbox_message("m3") is None
    assert store.create_call_task(task("t2")) is False and store.get_call_task("t2") is None
    assert store.delete_customer("c1") == {"inboxMessages": 0, "callTasks": 0}  # idempotent


def test_api_keys(store):
    key = {
        "keyId": "k1",
        "keyHash": "ab" * 32,
        "scopes": ["read:*"],
        "name": "demo",
        "ratePerSecond": 10.0,
        "burst": 20,
        "createdAt": NOW,
    }
    assert store.create_api_key(key) is True
    assert store.create_api_key(key | {"scopes": ["admin"]}) is False
    assert store.get_api_key("k1") == key | {"revokedAt": None}
    assert [k["keyId"] for k in store.list_api_keys()] == ["k1"]
    assert store.revoke_api_key("k1", now=NOW + 1) is True
    assert store.revoke_api_key("k1") is False and store.revoke_api_key("zz") is False
    assert store.get_api_key("k1")["revokedAt"] == NOW + 1
    assert store.get_api_key("zz") is None


def test_bad_input_is_rejected_without_values(store):
    with pytest.raises(ValueError, match="lacks field"):
        store.upsert_inbox_message({"messageId": "m"})
    with pytest.raises(ValueError, match="dueAt must be an int") as err:
        store.create_call_task(task("t", due="soon"))
    assert "soon" not in str(err.value)


def test_deleted_among_spans_batches(store):
    """More ids than one BatchGetItem takes (100 keys): every deletion is found, duplicates asked once."""
    deleted = {f"d{i:04d}" for i in range(0, 240, 2)}
    for c in deleted:
        store.delete_customer(c, now=NOW)
    assert store.deleted_among([f"d{i:04d}" for i in range(240)] * 2) == deleted
