"""One contract for both refund ledgers: SQLite (a file under tmp_path) and DynamoDB (a real moto server, a table
per test), each opened through its `RefundLedgerResource` class.  The same assertions run on both: auto-processing and the
approval queue, approve/reject (a rejection frees its budget), best score first within the budget, a budget per
partition, idempotent re-runs, unique and stable codes, states, no personal data stored, and several workers at
once against one small budget."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

import pyarrow as pa
import pytest

from resources.customer_state import CustomerState
from resources.refund_ledger import base as refunds
from resources.refund_ledger.base import CODE_ALPHABET, subject_key
from resources.refund_ledger.dynamodb import DynamoDbRefundLedger
from resources.refund_ledger.resource import (
    DynamoDbRefundLedgerResource,
    RefundLedgerResource,
    SqliteRefundLedgerResource,
)
from resources.refund_ledger.sqlite import RefundLedger
from tests.test_conditions import AS_OF as SEND_TIME
from tests.test_conditions import warehouse  # noqa: F401  (the fixture: a DuckDB warehouse with customers C1-C7)
from tests.test_refunds import REFUNDS, refund_plan, with_budget

P = REFUNDS.programId
DAY, NEXT_DAY = "2026-11-21", "2026-11-22"


@dataclass
class Backend:
    """One fresh refund ledger: `open()` is another worker's handle on it (its own ledger object)."""

    name: str
    resource: RefundLedgerResource

    def open(self) -> RefundLedger | DynamoDbRefundLedger:
        return self.resource.ledger()


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request, tmp_path) -> Backend:
    if request.param == "sqlite":
        sqlite = SqliteRefundLedgerResource(path=str(tmp_path / "refunds.sqlite"))
        # The file and its schema exist before workers open it (as the table does): SQLite answers "database is
        # locked" to threads that switch a new file to WAL at the same moment.
        sqlite.ledger().conn()
        return Backend("sqlite", sqlite)
    endpoint = request.getfixturevalue("moto_endpoint")
    request.getfixturevalue("atomic_moto")  # the ledger itself writes from several threads (code draws)
    resource = DynamoDbRefundLedgerResource(
        table_name=f"refunds-{uuid.uuid4().hex[:12]}", region_name="us-east-1", endpoint_url=endpoint
    )
    resource.create_table()
    return Backend("dynamodb", resource)


@pytest.fixture
def ledger(backend):
    return backend.open()


@pytest.fixture
def atomic_moto(monkeypatch):
    """moto applies a conditional write as check-then-write, and a failed transaction by restoring a copy of the
    table taken when it began, neither under a lock: requests handled at once by the server's threads can lose one
    another's writes (or fail copying a table another thread writes to).  DynamoDB's conditional writes and
    transactions are atomic; one lock around moto's operations gives the test's threads that guarantee.  Reads take
    it too: moto builds an updated item in place, so a read racing an update can see the item half-written (a code
    item without its code), which DynamoDB never shows."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()  # re-entrant: a transaction calls put_item/update_item inside
    for name in (
        "transact_write_items",
        "update_item",
        "put_item",
        "delete_item",
        "batch_write_item",
        "get_item",
        "batch_get_item",
        "query",
    ):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, original_=original, **kwargs):
            with lock:
                return original_(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


# -- refunds and credits ----------------------------------------------------------------------------------------------
def test_auto_processed_once_then_a_rerun_finds_what_was_issued(ledger):
    plan = refund_plan(REFUNDS, 10)
    first = ledger.issue(REFUNDS, plan, DAY, now=1)
    assert vars(first) == {
        "processed": 10,
        "pending_approval": 0,
        "already_issued": 0,
        "over_budget": 0,
        "spent_usd": 1_000.0,
        "refused": [],
    }
    again = ledger.issue(REFUNDS, plan, DAY, now=2)
    assert (again.processed, again.already_issued, again.spent_usd) == (0, 10, 1_000.0)
    credit, refund = ledger.issued(P, "C3", "O3")
    assert refund == {
        "kind": "refund",
        "refund_type": "full",
        "amount": 85.0,
        "currency": "EUR",
        "amount_usd": refund["amount_usd"],
        "code": None,
        "state": "processed",
    }
    assert (credit["kind"], credit["amount"], credit["state"]) == ("credit", 17.0, "processed")
    assert isinstance(credit["code"], str) and credit["amount_usd"] + refund["amount_usd"] == pytest.approx(100.0)
    assert ledger.issued(P, "C3", "O4") == [] and ledger.pending(P) == []


def test_holdouts_get_nothing_and_a_program_without_refunds_is_refused(ledger):
    held = refund_plan(REFUNDS, 3, holdout=True)
    assert ledger.issue(REFUNDS, held, DAY).processed == 0 and ledger.spent_usd(P, DAY) == 0
    assert ledger.issue_codes(REFUNDS, held) == {}
    win_back = with_budget(REFUNDS, 100).model_copy(update={"refundStrategy": None})
    with pytest.raises(ValueError, match="no refundStrategy"):
        ledger.issue(win_back, [], DAY)


def test_approval_queue_approve_and_reject(ledger):
    program = with_budget(REFUNDS, 400, require_approval=True)
    result = ledger.issue(program, refund_plan(program, 4), DAY, now=10)
    assert (result.processed, result.pending_approval, result.spent_usd) == (0, 4, 400.0)  # queued holds budget
    queue = ledger.pending(P)
    assert len(queue) == 8 and {q["kind"] for q in queue} == {"refund", "credit"}
    assert set(queue[0]) == {
        "issuance_id",
        "program_id",
        "partition_key",
        "customer_id",
        "subject_id",
        "kind",
        "refund_type",
        "amount",
        "currency",
        "amount_usd",
        "created_at",
    }
    assert (queue[0]["partition_key"], queue[0]["created_at"]) == (DAY, 10)
    assert len(ledger.pending(P, limit=3)) == 3
    ids = {c: [q["issuance_id"] for q in queue if q["customer_id"] == c] for c in ("C0", "C1")}
    # The budget is spent: a fifth candidate waits for room.
    assert ledger.issue(program, refund_plan(program, 1, start=4), DAY).over_budget == 1
    assert ledger.approve(ids["C0"], approver="ops-1", now=11) == 2
    assert ledger.reject(ids["C1"], approver="ops-1", now=11) == 2
    assert ledger.approve(ids["C1"], approver="ops-2") == 0 and ledger.reject(ids["C0"], approver="ops-2") == 0
    assert ledger.approve(["not-an-id", "x#y#z#refund"], approver="ops-2") == 0
    assert ledger.spent_usd(P, DAY) == 300.0  # the rejection gave its $100 back
    assert ledger.states(P, [("C0", "O0"), ("C1", "O1"), ("C2", "O2"), ("C9", "O9")]) == {
        ("C0", "O0"): "processed",
        ("C1", "O1"): "rejected",
        ("C2", "O2"): "pending_approval",
    }
    assert {q["customer_id"] for q in ledger.pending(P)} == {"C2", "C3"}
    # ... so the fifth candidate fits now.
    assert ledger.issue(program, refund_plan(program, 1, start=4), DAY).pending_approval == 1


def test_auto_process_off_queues_every_segment(ledger):
    raw = REFUNDS.model_dump(by_alias=True, exclude_none=True)
    raw["refundStrategy"]["autoProcess"] = False
    program = type(REFUNDS).model_validate(raw)
    assert ledger.issue(program, refund_plan(program, 3), DAY).pending_approval == 3


def test_budget_takes_the_best_scores_first_and_each_partition_has_its_own(ledger):
    program = with_budget(REFUNDS, 450)
    result = ledger.issue(program, refund_plan(program, 10), DAY, chunk=3)
    assert (result.processed, result.over_budget, result.spent_usd) == (4, 6, 400.0)
    assert result.refused == [subject_key(P, f"C{i}", f"O{i}") for i in range(4, 10)]  # the lowest scores
    assert [bool(ledger.issued(P, f"C{i}", f"O{i}")) for i in (3, 4)] == [True, False]
    other = ledger.issue(program, refund_plan(program, 5, start=100), NEXT_DAY)
    assert (other.processed, other.spent_usd, ledger.spent_usd(P, DAY)) == (4, 400.0, 400.0)


def test_nothing_personal_is_stored_or_logged(ledger, caplog):
    caplog.set_level(logging.DEBUG)
    plan = refund_plan(REFUNDS, 2)
    for column, value in (("customerName", "Ada Lovelace"), ("email", "ada@example.com"), ("phone", "+15550001")):
        plan = plan.append_column(column, pa.array([value] * plan.num_rows))
    ledger.issue(with_budget(REFUNDS, 150, require_approval=True), plan, DAY)
    ledger.issue_codes(P, plan.to_pylist())
    ledger.reject([q["issuance_id"] for q in ledger.pending(P)], approver="ops-1")
    if isinstance(ledger, DynamoDbRefundLedger):  # everything the ledger stores, as text
        stored = json.dumps(ledger.client().scan(TableName=ledger.table_name)["Items"])
    else:
        with closing(sqlite3.connect(ledger.path)) as con:
            stored = "\n".join(con.iterdump())
    text = stored + "\n".join(r.getMessage() for r in caplog.records)
    assert "C0" in text and not any(pii in text for pii in ("Lovelace", "ada@example.com", "+15550001"))


# -- discount codes -----------------------------------------------------------------------------------------------------
def test_codes_unique_and_stable_per_program_customer_and_subject(ledger):
    rows = [{"customerId": f"C{i}", "subjectId": f"S{i % 7}"} for i in range(120)] + [
        {"customerId": "C0", "subjectId": "S1"}
    ]
    codes = ledger.issue_codes("win-back-campaigns", rows, partition_key="2026-11-02")
    assert len(codes) == 121 and len(set(codes.values())) == 121
    assert all(len(c) == 10 and set(c) <= set(CODE_ALPHABET) for c in codes.values())
    assert ledger.issue_codes("win-back-campaigns", rows[:5] + rows[-1:]) == {
        subject_key("win-back-campaigns", r["customerId"], r["subjectId"]): codes[
            subject_key("win-back-campaigns", r["customerId"], r["subjectId"])
        ]
        for r in rows[:5] + rows[-1:]
    }
    assert ledger.codes_for("win-back-campaigns", [("C0", "S1"), ("C0", "S9")]) == {
        ("C0", "S1"): codes["win-back-campaigns#C0#S1"]
    }
    assert (
        ledger.issue_codes("churn-prevention", rows[:1])["churn-prevention#C0#S0"] != codes["win-back-campaigns#C0#S0"]
    )


def test_a_refund_credit_carries_the_candidates_code(ledger):
    plan = refund_plan(REFUNDS, 3)
    shown = ledger.issue_codes(REFUNDS, plan)  # a template asked first
    ledger.issue(REFUNDS, plan, DAY)
    assert [ledger.issued(P, f"C{i}", f"O{i}")[0]["code"] for i in range(3)] == [
        shown[subject_key(P, f"C{i}", f"O{i}")] for i in range(3)
    ]
    assert ledger.issue_codes(REFUNDS, refund_plan(REFUNDS, 4)) == ledger.issue_codes(REFUNDS, refund_plan(REFUNDS, 4))


def test_a_code_collision_draws_again(ledger, monkeypatch):
    taken = ledger.issue_codes("p", [{"customerId": "A", "subjectId": "A"}])["p#A#A"]
    draws = iter([taken, taken, "ZZZZZZZZZZ"])
    monkeypatch.setattr(refunds, "new_code", lambda: next(draws))
    assert ledger.issue_codes("p", [{"customerId": "B", "subjectId": "B"}]) == {"p#B#B": "ZZZZZZZZZZ"}
    assert ledger.codes_for("p", [("A", "A"), ("B", "B")]) == {("A", "A"): taken, ("B", "B"): "ZZZZZZZZZZ"}


def test_ids_holding_the_key_separator_stay_apart(ledger):
    keys = [("a#b", "c"), ("a", "b#c"), ("a%23b", "c")]  # the first two have one subject_key: ask codes_for
    ledger.issue_codes("p", [{"customerId": c, "subjectId": s} for c, s in keys])
    assert len(set(ledger.codes_for("p", keys).values())) == 3


# -- several workers at once ------------------------------------------------------------------------------------------
def run_workers(backend: Backend, work: Callable, jobs: list) -> list:
    """Each job on its own thread with its own ledger object (another "worker")."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: work(backend.open(), job), jobs))


def test_budget_never_exceeded_by_concurrent_workers(backend):
    program = with_budget(REFUNDS, 2_050)  # room for 20 candidates of $100; 6 workers offer 60 different ones

    def work(ledger, start):
        return ledger.issue(program, refund_plan(program, 10, start=start), DAY, chunk=3)

    results = run_workers(backend, work, [100 * k for k in range(6)])
    assert sum(r.processed for r in results) == 20 and sum(r.over_budget for r in results) == 40
    ledger = backend.open()
    assert ledger.spent_usd(P, DAY) == 2_000.0
    states = ledger.states(P, [(f"C{100 * k + i}", f"O{100 * k + i}") for k in range(6) for i in range(10)])
    assert Counter(states.values()) == {"processed": 20}


def test_concurrent_reruns_of_one_partition_issue_each_candidate_once(backend):
    program = with_budget(REFUNDS, 10_000, require_approval=True)
    plan = refund_plan(program, 8)
    results = run_workers(backend, lambda ledger, _: ledger.issue(program, plan, DAY, chunk=3), list(range(4)))
    assert sum(r.pending_approval for r in results) == 8 and sum(r.already_issued for r in results) == 24
    ledger = backend.open()
    assert ledger.spent_usd(P, DAY) == 800.0
    ids = [q["issuance_id"] for q in ledger.pending(P)]
    assert sum(run_workers(backend, lambda led, _: led.reject(ids, approver="ops"), [0, 1, 2])) == 16
    assert ledger.spent_usd(P, DAY) == 0.0  # each rejection gave its amount back once


def test_concurrent_code_issuance_gives_one_code_per_candidate(backend):
    rows = [{"customerId": f"C{i}", "subjectId": f"C{i}"} for i in range(60)]
    results = run_workers(backend, lambda ledger, _: ledger.issue_codes("p", rows), list(range(4)))
    assert all(r == results[0] for r in results) and len(set(results[0].values())) == 60


# -- resources ----------------------------------------------------------------------------------------------------------
def test_each_resource_opens_its_backend(tmp_path, moto_endpoint):
    sqlite = SqliteRefundLedgerResource(path=str(tmp_path / "r.sqlite"))
    assert isinstance(sqlite, RefundLedgerResource) and isinstance(sqlite.ledger(), RefundLedger)
    resource = DynamoDbRefundLedgerResource(table_name="t", region_name="us-east-1", endpoint_url=moto_endpoint)
    assert isinstance(resource, RefundLedgerResource)
    dynamo = resource.ledger()
    assert isinstance(dynamo, DynamoDbRefundLedger) and (dynamo.table_name, dynamo.endpoint_url) == ("t", moto_endpoint)


def test_send_time_reads_refund_states_through_the_resource(backend, warehouse):  # noqa: F811
    ledger = backend.open()
    ledger.issue(REFUNDS, refund_plan(REFUNDS, 1, start=1), DAY)  # C1: processed
    queued = with_budget(REFUNDS, 10_000, require_approval=True)
    ledger.issue(queued, refund_plan(queued, 1, start=2), DAY)  # C2: waits for approval
    state = CustomerState(warehouse=warehouse, refund_ledger=backend.resource)
    touches = [
        {
            "customerId": c,
            "subjectId": f"O{c[1:]}",
            "programId": P,
            "channel": "email",
            "conditions": "[]",
            "partitionKey": DAY,
            "offer": json.dumps({"refundType": "full"}),
        }
        for c in ("C1", "C2", "C4")
    ]
    assert state.recheck_many(touches, SEND_TIME) == [None, "wait:refund_pending_approval", "refund_not_issued"]
    # Without a refund ledger the refund is not checked (as before).
    assert CustomerState(warehouse=warehouse).recheck_many(touches, SEND_TIME) == [None, None, None]
