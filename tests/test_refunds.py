"""Refunds, credits and discount codes: auto-processing, the approval queue, the budget under concurrency, codes."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from engage_assets.domain.config import load_programs
from engage_assets.domain.plan import plan_touches
from resources.refund_ledger import base as refunds
from resources.refund_ledger.base import CODE_ALPHABET, candidate_issuances, subject_key
from resources.refund_ledger.sqlite import RefundLedger

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = {p.programId: p for p in load_programs(ROOT / "program_configs")}
REFUNDS = PROGRAMS["proactive-refunds"]
AS_OF = datetime(2026, 11, 22, tzinfo=UTC)


def with_budget(program, amount, require_approval=None):
    """A copy of the program with another budget (and, optionally, every segment's requireApproval)."""
    raw = program.model_dump(by_alias=True, exclude_none=True)
    raw["budget"]["amount"] = amount
    if require_approval is not None:
        for seg in raw["refundStrategy"]["segments"]:
            seg["requireApproval"] = require_approval
    return type(program).model_validate(raw)


def refund_plan(program, n, segment="high", offer_type="full", value_usd=100.0, start=0, holdout=False):
    """Plan rows of n refund candidates (through the real planner: two touches each for the high segment)."""
    offers = refund_offers(n, segment, offer_type, value_usd, start, holdout)
    return plan_touches(program, offers, None, AS_OF, partition_key="2026-11-21")


def refund_offers(n, segment="high", offer_type="full", value_usd=100.0, start=0, holdout=False) -> pa.Table:
    """Offer rows of n refund candidates (the offers stage's columns the planner reads)."""
    return pa.table(
        {
            "customer_id": [f"C{i}" for i in range(start, start + n)],
            "order_id": [f"O{i}" for i in range(start, start + n)],
            "segment": [segment] * n,
            "offer_type": [offer_type] * n,
            "score": [0.9 - i * 1e-6 for i in range(n)],
            "holdout": [holdout] * n,
            "offer_value_usd": [value_usd] * n,
            "marketplace": ["DE"] * n,
            "order_value": [85.0] * n,
            "order_value_usd": [100.0] * n,
            "currency": ["EUR"] * n,
        }
    )


def test_full_refund_is_the_order_value_plus_credit_in_the_orders_currency():
    offer = {"refundType": "full", "refundAmount": 85.0, "creditAmount": 17.0, "valueUsd": 120.0}
    parts = candidate_issuances(REFUNDS, offer, "EUR")
    assert [(p.kind, p.amount, p.currency) for p in parts] == [("refund", 85.0, "EUR"), ("credit", 17.0, "EUR")]
    assert round(sum(p.amount_usd for p in parts), 2) == 120.0
    partial = candidate_issuances(REFUNDS, {"refundType": "partial", "refundAmount": 20, "valueUsd": 20}, "USD")
    assert [(p.kind, p.amount) for p in partial] == [("credit", 20.0)]


def test_auto_processed_once_and_idempotent(tmp_path):
    ledger = RefundLedger(tmp_path / "r.sqlite")
    plan = refund_plan(REFUNDS, 10)
    first = ledger.issue(REFUNDS, plan, "2026-11-21", now=1)
    assert (first.processed, first.pending_approval, first.over_budget) == (10, 0, 0)
    again = ledger.issue(REFUNDS, plan, "2026-11-21", now=2)
    assert (again.processed, again.already_issued) == (0, 10)
    assert again.spent_usd == first.spent_usd == 1_000.0
    rows = ledger.issued("proactive-refunds", "C0", "O0")
    assert [(r["kind"], r["amount"], r["currency"], r["state"]) for r in rows] == [
        ("credit", 17.0, "EUR", "processed"),
        ("refund", 85.0, "EUR", "processed"),
    ]
    assert rows[0]["code"] and rows[1]["code"] is None  # the credit carries the code the e-mail shows


def test_holdout_gets_nothing(tmp_path):
    ledger = RefundLedger(tmp_path / "r.sqlite")
    result = ledger.issue(REFUNDS, refund_plan(REFUNDS, 5, holdout=True), "2026-11-21")
    assert result.processed == 0 and result.spent_usd == 0
    assert ledger.issue_codes(REFUNDS, refund_plan(REFUNDS, 5, holdout=True)) == {}


def test_approval_queue(tmp_path):
    program = with_budget(REFUNDS, 10_000, require_approval=True)
    ledger = RefundLedger(tmp_path / "r.sqlite")
    result = ledger.issue(program, refund_plan(program, 4), "2026-11-21", now=10)
    assert (result.processed, result.pending_approval) == (0, 4)
    queue = ledger.pending(program.programId)
    assert len(queue) == 8  # refund + credit per candidate
    assert ledger.spent_usd(program.programId, "2026-11-21") == 400.0  # queued amounts hold their budget
    c0 = [q["issuance_id"] for q in queue if q["customer_id"] == "C0"]
    c1 = [q["issuance_id"] for q in queue if q["customer_id"] == "C1"]
    assert ledger.approve(c0, approver="ops-1", now=11) == 2
    assert ledger.reject(c1, approver="ops-1", now=11) == 2
    assert ledger.approve(c1, approver="ops-2") == 0  # a decision is final
    states = ledger.states(program.programId, [("C0", "O0"), ("C1", "O1"), ("C2", "O2"), ("C9", "O9")])
    assert states == {("C0", "O0"): "processed", ("C1", "O1"): "rejected", ("C2", "O2"): "pending_approval"}
    assert ledger.spent_usd(program.programId, "2026-11-21") == 300.0  # a rejection frees its budget
    assert len(ledger.pending(program.programId)) == 4


def test_auto_process_off_queues_everything(tmp_path):
    raw = REFUNDS.model_dump(by_alias=True, exclude_none=True)
    raw["refundStrategy"]["autoProcess"] = False
    program = type(REFUNDS).model_validate(raw)
    result = RefundLedger(tmp_path / "r.sqlite").issue(program, refund_plan(program, 3), "2026-11-21")
    assert result.pending_approval == 3


def test_budget_stops_at_the_last_candidate_that_fits_best_score_first(tmp_path):
    program = with_budget(REFUNDS, 450)
    ledger = RefundLedger(tmp_path / "r.sqlite")
    result = ledger.issue(program, refund_plan(program, 10), "2026-11-21")
    assert (result.processed, result.over_budget) == (4, 6)
    assert result.spent_usd == 400.0
    assert subject_key("proactive-refunds", "C9", "O9") in result.refused  # the lowest scores are refused
    assert ledger.issued("proactive-refunds", "C0", "O0")
    # Another partition has its own budget.
    assert ledger.issue(program, refund_plan(program, 2, start=100), "2026-11-22").processed == 2


def _issue_in_process(args):
    path, amount, start = args
    program = with_budget(REFUNDS, amount)
    return RefundLedger(path).issue(program, refund_plan(program, 25, start=start), "2026-11-21", chunk=5).processed


def test_budget_never_exceeded_under_concurrent_issuance(tmp_path):
    path = str(tmp_path / "r.sqlite")
    budget = 2_050  # room for 20 candidates of $100; 8 writers offer 200 different ones at once
    # ProcessPoolExecutor, not multiprocessing.Pool: Pool.__exit__ terminates its workers and can hang joining one
    # it is still starting (seen in CI).
    with ProcessPoolExecutor(4, mp_context=mp.get_context("spawn")) as ex:
        issued_p = sum(ex.map(_issue_in_process, [(path, budget, 1_000 * k) for k in range(4)]))
    with ThreadPoolExecutor(4) as ex:
        issued_t = sum(ex.map(_issue_in_process, [(path, budget, 10_000 + 1_000 * k) for k in range(4)]))
    assert issued_p + issued_t == 20
    with sqlite3.connect(path) as con:
        spent, n = con.execute("SELECT SUM(amount_usd), COUNT(DISTINCT customer_id) FROM issuances").fetchone()
    assert n == 20 and spent <= budget


def test_codes_unique_stable_and_unguessable(tmp_path):
    ledger = RefundLedger(tmp_path / "r.sqlite")
    rows = [{"customerId": f"C{i}", "subjectId": f"C{i}"} for i in range(20_000)]
    codes = ledger.issue_codes("win-back-campaigns", rows, partition_key="2026-11-02")
    assert len(codes) == 20_000 and len(set(codes.values())) == 20_000
    assert all(len(c) == 10 and set(c) <= set(CODE_ALPHABET) for c in codes.values())
    first = [subject_key("win-back-campaigns", r["customerId"], r["subjectId"]) for r in rows[:10]]
    assert ledger.issue_codes("win-back-campaigns", rows[:10]) == {k: codes[k] for k in first}
    assert ledger.codes_for("win-back-campaigns", [("C1", "C1")]) == {("C1", "C1"): codes["win-back-campaigns#C1#C1"]}
    # Another program's candidate with the same ids gets its own code.
    other = ledger.issue_codes("churn-prevention", rows[:1])
    assert other["churn-prevention#C0#C0"] != codes["win-back-campaigns#C0#C0"]


def test_a_code_collision_draws_again(tmp_path, monkeypatch):
    ledger = RefundLedger(tmp_path / "r.sqlite")
    ledger.issue_codes("p", [{"customerId": "A", "subjectId": "A"}])
    taken = ledger.codes_for("p", [("A", "A")])[("A", "A")]
    draws = iter([taken, taken, "ZZZZZZZZZZ"])
    monkeypatch.setattr(refunds, "new_code", lambda: next(draws))
    assert ledger.issue_codes("p", [{"customerId": "B", "subjectId": "B"}]) == {"p#B#B": "ZZZZZZZZZZ"}


def test_concurrent_code_issuance_gives_one_code_per_candidate(tmp_path):
    path = tmp_path / "r.sqlite"
    rows = [{"customerId": f"C{i}", "subjectId": f"C{i}"} for i in range(2_000)]
    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda _: RefundLedger(path).issue_codes("p", rows), range(6)))
    assert all(r == results[0] for r in results)
    assert len(set(results[0].values())) == 2_000


def test_no_refund_strategy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no refundStrategy"):
        RefundLedger(tmp_path / "r.sqlite").issue(PROGRAMS["win-back-campaigns"], [], "2026-11-02")


def test_plan_offer_amounts_feed_the_ledger():
    plan = refund_plan(REFUNDS, 1)
    offer = json.loads(plan.column("offer")[0].as_py())
    assert offer["refundAmount"] == 85 and offer["creditAmount"] == 17  # $20 at the order's EUR rate
