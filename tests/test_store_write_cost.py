"""The SQLite candidate store's cheaper write (issue 14): schema version 3 (GSI5 on a real column, no customer_id
index), the partition write's own thread at a lower CPU priority, the swap's page cache sized to the partition."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from typing import Any

import pytest

from resources.store.sqlite import SqliteCandidateStore
from resources.store.sqlite_schema import MIGRATIONS, upsert_rows
from resources.store.sqlite_write import SqliteStagedWrite, lower_thread_priority, swap_cache_kib
from tests.test_store_contract import NOW, P1, P2, churned, ids, rec, store  # noqa: F401 - the two-backend fixture

V2_INSERT = (
    "INSERT INTO candidates (pk, customer_id, program_id, partition_key, segment, offer_type, score, expires_at, "
    "created_at, gsi1pk, gsi2pk, gsi2sk, write_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def churn_mix() -> list[dict[str, Any]]:
    """Candidates on each side of GSI5's rule: a non-empty string reason, a score, not held out."""
    return [
        churned("in1", "price", score=0.9),
        churned("in2", "price", score=0.4),
        churned("held", "price", score=0.95, holdout=True),
        churned("noscore", "price", score=None),
        churned("empty", "", score=0.8),
        rec(
            "numeric", program="winback", segment="premium", offer_type="50pct", score=0.7, context={"churn_reason": 7}
        ),
        churned("none", None, score=0.6),
        churned("other", "service", score=0.5),
    ]


def test_a_version_2_file_migrates_to_the_churn_reason_column_by_the_index_rule(tmp_path):
    """A file at version 2 (GSI5 over json_extract of the body) opens at version 3: the column holds the reason of
    exactly the records churn_index_key indexes, the queries answer as before, and the customer index is gone."""
    path = tmp_path / "s.sqlite"
    records = churn_mix()
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:2]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 2")
        conn.executemany(V2_INSERT, [row[:14] for row in upsert_rows(records, "winback", P1, "w1", NOW)])
    s = SqliteCandidateStore(path=str(path))
    assert ids(s.query_by_churn_reason("winback", "price", now=NOW).items) == ["in1", "in2"]
    assert ids(s.query_by_churn_reason("winback", "service", now=NOW).items) == ["other"]
    s.close()
    with sqlite3.connect(path) as conn:
        column = dict(conn.execute("SELECT customer_id, churn_reason FROM candidates").fetchall())
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert column == {c: None for c in column} | {"in1": "price", "in2": "price", "other": "service"}
    assert "candidates_gsi5" in indexes and "candidates_customer" not in indexes
    # Written after the migration: the column follows the record (moved into the holdout, it leaves the index).
    s = SqliteCandidateStore(path=str(path))
    s.replace_partition("winback", P1, [churned("in1", "price", score=0.9, holdout=True)], now=NOW)
    assert ids(s.query_by_churn_reason("winback", "price", now=NOW).items) == []
    s.close()


def test_the_churn_index_holds_the_same_candidates_on_both_backends(store):  # noqa: F811
    store.replace_partition("winback", P1, churn_mix(), now=NOW)
    store.replace_partition("winback", P2, [churned("late", "price", P2, score=0.1)], now=NOW)
    assert ids(store.query_by_churn_reason("winback", "price", now=NOW).items) == ["late", "in1", "in2"]
    assert ids(store.query_by_churn_reason("winback", "service", now=NOW).items) == ["other"]


def test_a_customer_is_found_and_erased_by_key_range_even_when_ids_hold_hashes(store):  # noqa: F811
    """Without a customer_id index the key `customerId#programId` is searched by range; a customer whose id starts
    with another's id and '#' is not theirs."""
    store.replace_partition("refunds", P1, [rec("a"), rec("a#b"), rec("a$"), rec("ab")], now=NOW)
    store.replace_partition("winback", P1, [rec("a", program="winback"), rec("a#b", program="winback")], now=NOW)
    assert [(r["customerId"], r["programId"]) for r in store.customer_candidates("a", now=NOW)] == [
        ("a", "refunds"),
        ("a", "winback"),
    ]
    assert store.delete_customer("a") == 2
    assert store.customer_candidates("a", now=NOW) == []
    assert len(store.customer_candidates("a#b", now=NOW)) == 2
    assert store.count("refunds", P1, now=NOW) == 3


def test_sqlite_customer_reads_use_the_key_index(tmp_path):
    s = SqliteCandidateStore(path=str(tmp_path / "s.sqlite"))
    s.replace_partition("refunds", P1, [rec(f"c{i}") for i in range(50)], now=NOW)
    s.close()
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        plan = " ".join(
            str(r[-1])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT body FROM candidates WHERE pk >= ? AND pk < ? AND customer_id = ?",
                ("c1#", "c1$", "c1"),
            )
        )
    assert "sqlite_autoindex_candidates_1" in plan and "SCAN" not in plan, plan


def test_the_write_runs_in_its_own_thread_at_a_lower_priority_and_closes_its_connection(tmp_path):
    s = SqliteCandidateStore(path=str(tmp_path / "s.sqlite"))
    seen: list[tuple[int, int]] = []
    connections: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        tid = threading.get_native_id()
        seen.append((tid, os.getpriority(os.PRIO_PROCESS, tid) if sys.platform == "linux" else 0))
        connections.append(s._conn())
        return connections[-1]

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if sys.platform == "linux" else 0
    writer = SqliteStagedWrite(connect, s.close, "refunds", P1, now=NOW, niceness=5)
    writer.add([rec(f"c{i}") for i in range(10)])
    assert writer.commit().written == 10
    assert s.count("refunds", P1, now=NOW) == 10
    [(tid, priority)] = seen
    assert tid != threading.get_native_id()
    if sys.platform == "linux" and before + 5 <= 19:
        assert priority == before + 5
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # the caller's is unchanged
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the write
        connections[0].execute("SELECT 1")
    s.close()


def test_a_failing_chunk_leaves_the_store_as_it_was_and_the_write_closed(tmp_path):
    s = SqliteCandidateStore(path=str(tmp_path / "s.sqlite"))
    s.replace_partition("refunds", P1, [rec("old")], now=NOW)
    writer = s.partition_write("refunds", P1, now=NOW)
    writer.add([rec("c1")])
    with pytest.raises(ValueError, match="record #0"):
        writer.add([rec("c2", partition=P2)])  # the error crosses from the write's thread
    writer.abort()
    with pytest.raises(RuntimeError, match="aborted"):
        writer.add([rec("c3")])
    assert ids(s.customer_candidates("old", now=NOW)) == ["old"] and s.count("refunds", P1, now=NOW) == 1
    s.close()


def test_the_swap_cache_grows_with_the_partition_within_bounds():
    assert swap_cache_kib(0) == swap_cache_kib(20_000) == 32_768
    assert swap_cache_kib(100_000) == 100_000
    assert swap_cache_kib(300_000) == swap_cache_kib(10**7) == 262_144


def test_no_priority_change_without_niceness():
    assert lower_thread_priority(0) is False


def write_both(stores, program: str, records: list[dict[str, Any]], chunk: int | None) -> list[tuple[Any, ...]]:
    """`records` into P1 of stores[0] by a chunked partition write (`chunk` None: one chunk) and of stores[1] by one
    replace_partition; both results' (written, deleted, skipped_newer, duplicates dropped)."""
    writer = stores[0].partition_write(program, P1, now=NOW)
    for i in range(0, len(records), chunk or len(records)):
        writer.add(records[i : i + (chunk or len(records))])
    results = [writer.commit(), stores[1].replace_partition(program, P1, records, now=NOW)]
    return [(r.written, r.deleted, r.skipped_newer, r.extra.get("duplicates_dropped")) for r in results]


@pytest.mark.parametrize("chunk", [None, 4])  # None: one chunk (upserted with no stage); 4: staged chunks
def test_one_chunk_or_many_leave_what_replace_partition_leaves(tmp_path, chunk):
    """The single-chunk write skips the stage (the swap upserts it directly); counts and rows are the same as one
    `replace_partition` of the same records, and as the staged path's."""
    stores = [SqliteCandidateStore(path=str(tmp_path / f"{name}.sqlite")) for name in ("chunked", "reference")]
    for s in stores:
        s.replace_partition("refunds", P2, [rec("newer", partition=P2)], now=NOW)
        s.replace_partition("refunds", P1, [rec(f"old{i}") for i in range(6)], now=NOW)
    records = [rec(f"old{i}", score=i / 10) for i in range(3)] + [rec("newer"), rec("n1"), rec("n1", score=0.75)]
    assert write_both(stores, "refunds", records, chunk) == [(4, 3, 1, 1), (4, 3, 1, 1)]
    for s in stores:
        assert (
            s.get("n1", "refunds", now=NOW)["score"] == 0.75
            and s.get("newer", "refunds", now=NOW)["partitionKey"] == P2
        )
        assert sorted(ids(s.query_by_segment("refunds", "high", now=NOW).items)) == [
            "n1",
            "newer",
            "old0",
            "old1",
            "old2",
        ]
        s.close()


def queries(s: SqliteCandidateStore) -> list[Any]:
    """What every index answers, in its order (bodies included)."""
    return [
        s.query_by_segment("winback", "premium", now=NOW).items,
        s.query_by_score("winback", "50pct", now=NOW).items,
        s.query_by_offer_type("winback", "50pct", now=NOW).items,
        s.query_by_churn_reason("winback", "price", now=NOW).items,
        s.query_by_churn_reason("winback", "service", now=NOW).items,
        [s.get(f"c{i}", "winback", now=NOW) for i in range(12)],
    ]


@pytest.mark.parametrize("chunk", [None, 3])  # one chunk (direct) or staged chunks
def test_a_rerun_rewrites_rows_whose_index_keys_hold_and_upserts_the_rest(tmp_path, chunk):
    """A re-run of a partition: rows whose partition, score and index keys are unchanged are rewritten in place (new
    body, no index touched), the others upserted; a newer partition's customer kept.  Counts, rows and every index's
    answers equal one replace_partition's on a second store."""
    stores = [SqliteCandidateStore(path=str(tmp_path / f"{name}.sqlite")) for name in ("chunked", "reference")]
    first = [churned(f"c{i}", "price" if i % 2 else "service", score=i / 10) for i in range(10)]
    rerun = [dict(r, createdAt="2024-01-02T00:00:00Z", channels=["sms"]) for r in first[:6]]  # bodies only changed
    rerun += [churned("c6", "price", score=0.99), churned("c7", "service", score=0.7, holdout=True)]  # keys change
    rerun += [churned("c10", "price", score=0.5), churned("c11", "price", score=0.3)]  # new; c11's P2 is newer
    for s in stores:
        s.replace_partition("winback", P2, [churned("c11", "service", P2, score=0.2)], now=NOW)
        s.replace_partition("winback", P1, first, now=NOW)
    assert write_both(stores, "winback", rerun, chunk) == [(9, 2, 1, None), (9, 2, 1, None)]
    assert queries(stores[0]) == queries(stores[1])
    assert stores[0].get("c0", "winback", now=NOW)["channels"] == ["sms"]  # rewritten in place
    assert ids(stores[0].query_by_churn_reason("winback", "price", now=NOW).items)[0] == "c6"  # re-indexed
    for s in stores:
        s.close()


def test_the_staged_rewrite_is_driven_by_the_stage_through_the_key_index(tmp_path):
    """The in-place step of a staged swap looks each staged row up by key (a scan of the store would cost the
    store's size, not the partition's)."""
    from resources.store.sqlite_write import REWRITE_STAGED, STAGE_SCHEMA

    s = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    s.replace_partition("refunds", P1, [rec(f"c{i}") for i in range(50)], now=NOW)
    conn = s._conn()
    conn.execute(STAGE_SCHEMA.format(name="temp.stage_x"))
    plan = [str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + REWRITE_STAGED.format(name="temp.stage_x"))]
    assert plan[0].startswith("SCAN s") and "sqlite_autoindex_candidates_1 (pk=?)" in plan[1], plan
    s.close()


@pytest.mark.parametrize("chunk", [None, 3])  # one chunk (direct) or staged chunks
def test_a_swap_runs_only_the_steps_that_can_write(tmp_path, chunk):
    """A partition the store does not hold yet has nothing to rewrite in place (no rewrite step); a re-run whose every
    row keeps its index keys is wholly rewritten (no upsert step).  Either way the rows are replace_partition's."""
    stores = [SqliteCandidateStore(path=str(tmp_path / f"{name}.sqlite")) for name in ("chunked", "reference")]
    first = [churned(f"c{i}", "price" if i % 2 else "service", score=i / 10) for i in range(8)]
    rerun = [dict(r, createdAt="2024-01-02T00:00:00Z", channels=["sms"]) for r in first]
    steps = []
    for records in (first, rerun):
        writer = stores[0].partition_write("winback", P1, now=NOW)
        writer._run(lambda w=writer: w.conn.set_trace_callback(steps.append))
        for i in range(0, len(records), chunk or len(records)):
            writer.add(records[i : i + (chunk or len(records))])
        result = writer.commit()
        assert result.written == len(records) and result.deleted == 0
        stores[1].replace_partition("winback", P1, records, now=NOW)
        assert queries(stores[0]) == queries(stores[1])
        rewrites = [s for s in steps if s.startswith("UPDATE candidates")]
        upserts = [s for s in steps if s.startswith("INSERT INTO candidates")]
        assert (bool(rewrites), bool(upserts)) == ((False, True) if records is first else (True, False))
        steps.clear()
    assert stores[0].get("c0", "winback", now=NOW)["channels"] == ["sms"]
    for s in stores:
        s.close()
