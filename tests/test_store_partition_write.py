"""The chunked partition write (`CandidateStore.partition_write`), on both backends: the chunks committed leave
exactly what one `replace_partition` with all their records leaves.  On SQLite, nothing is visible (nor locked)
before the commit, and a reader never sees a half-replaced partition."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from resources.store.base import CandidateStore
from resources.store.sqlite import SqliteCandidateStore
from tests.test_store_contract import NOW, P1, P2, P3, make_dynamodb, rec


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path) -> CandidateStore:
    if request.param == "sqlite":
        s = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
        yield s
        s.close()
    else:
        yield make_dynamodb(request.getfixturevalue("moto_endpoint"))


def write_in_chunks(store: CandidateStore, partition: str, records: list, size: int, **kw):
    writer = store.partition_write("refunds", partition, now=NOW, **kw)
    for i in range(0, len(records), size):
        writer.add(records[i : i + size])
    return writer.commit()


def state(store: CandidateStore) -> list:
    return sorted(
        (r["customerId"], r["partitionKey"], r["score"])
        for c in ("a", "b", "c", "d", "x")
        for i in range(12)
        for r in store.customer_candidates(f"{c}{i}", now=NOW)
    )


def test_chunks_leave_what_one_replace_partition_leaves(store, tmp_path):
    """Stale rows of the partition deleted, a newer partition's customer kept, a re-added customer's last record
    wins, other partitions untouched; the counts are replace_partition's."""
    store.replace_partition("refunds", P3, [rec("x1", partition=P3)], now=NOW)
    store.replace_partition("refunds", P2, [rec(f"a{i}", partition=P2) for i in range(10)], now=NOW)
    store.replace_partition("refunds", P1, [rec(f"b{i}", partition=P1) for i in range(5)], now=NOW)
    records = [rec(f"a{i}", partition=P2, score=i / 10) for i in range(6)] + [rec("x1", partition=P2)]
    records += [rec("a2", partition=P2, score=0.99)]  # re-added in a later chunk: last one wins
    result = write_in_chunks(store, P2, records, size=3)
    assert (result.written, result.deleted, result.skipped_newer) == (6, 4, 1)
    assert store.get("a2", "refunds", now=NOW)["score"] == 0.99
    assert store.get("x1", "refunds", now=NOW)["partitionKey"] == P3
    assert store.count("refunds", P2, now=NOW) == 6
    assert store.count("refunds", P1, now=NOW) == 5

    # the same input through replace_partition, on a fresh store of the same backend, leaves the same rows
    reference = SqliteCandidateStore(path=str(tmp_path / "reference.sqlite"))
    reference.replace_partition("refunds", P3, [rec("x1", partition=P3)], now=NOW)
    reference.replace_partition("refunds", P2, [rec(f"a{i}", partition=P2) for i in range(10)], now=NOW)
    reference.replace_partition("refunds", P1, [rec(f"b{i}", partition=P1) for i in range(5)], now=NOW)
    reference.replace_partition("refunds", P2, records, now=NOW)
    assert state(store) == state(reference)


def test_an_empty_write_empties_the_partition(store):
    store.replace_partition("refunds", P1, [rec(f"b{i}") for i in range(4)], now=NOW)
    result = store.partition_write("refunds", P1, now=NOW).commit()
    assert (result.written, result.deleted) == (0, 4)
    assert store.count("refunds", P1, now=NOW) == 0


def test_bad_records_and_keys_are_refused(store):
    with pytest.raises(ValueError, match="partition_key"):
        store.partition_write("refunds", "2024#01", now=NOW)
    writer = store.partition_write("refunds", P1, now=NOW)
    with pytest.raises(ValueError, match="record #0"):
        writer.add([rec("c1", partition=P2)])


def test_sqlite_nothing_is_visible_or_locked_before_the_commit(tmp_path):
    """Staged chunks take no lock on the store file: another writer commits meanwhile, a reader sees the old
    partition until the swap; an aborted write leaves the store as it was."""
    path = str(tmp_path / "store.sqlite")
    store = SqliteCandidateStore(path=path, busy_timeout_ms=200)
    store.replace_partition("refunds", P1, [rec(f"b{i}") for i in range(5)], now=NOW)
    writer = store.partition_write("refunds", P1, now=NOW)
    writer.add([rec(f"a{i}", score=0.9) for i in range(8)])

    other: list[int] = []

    def second_writer() -> None:  # its own thread, its own connection: would time out if the stage held a lock
        s = SqliteCandidateStore(path=path, busy_timeout_ms=200)
        other.append(s.replace_partition("refunds", P2, [rec("d1", partition=P2)], now=NOW).written)
        s.close()

    t = threading.Thread(target=second_writer)
    t.start()
    t.join()
    assert other == [1]
    reader = sqlite3.connect(path)
    count = "SELECT count(*) FROM candidates WHERE partition_key = ?"
    assert reader.execute(count, (P1,)).fetchone()[0] == 5
    writer.add([rec(f"a{i}", score=0.9) for i in range(8, 12)])
    assert writer.commit().written == 12
    assert reader.execute(count, (P1,)).fetchone()[0] == 12

    aborted = store.partition_write("refunds", P1, now=NOW)
    aborted.add([rec("z1")])
    aborted.abort()
    assert store.count("refunds", P1, now=NOW) == 12
    with pytest.raises(RuntimeError, match="aborted"):
        aborted.commit()
    store.close()


def test_sqlite_a_reader_never_sees_a_half_replaced_partition(tmp_path):
    """A reader polling the partition's size during a 20,000-record chunked write sees the old size or the new one,
    never one between."""
    path = str(tmp_path / "store.sqlite")
    store = SqliteCandidateStore(path=path)
    store.replace_partition("refunds", P1, [rec(f"b{i:05d}") for i in range(3_000)], now=NOW)
    seen: set[int] = set()
    done = threading.Event()

    def reader() -> None:
        conn = sqlite3.connect(path)
        while not done.is_set():
            seen.add(conn.execute("SELECT count(*) FROM candidates WHERE partition_key = ?", (P1,)).fetchone()[0])
        conn.close()

    t = threading.Thread(target=reader)
    t.start()
    try:
        records = [rec(f"a{i:05d}") for i in range(20_000)]
        writer = store.partition_write("refunds", P1, now=NOW)
        for i in range(0, len(records), 1_000):
            writer.add(records[i : i + 1_000])
        writer.commit()
        seen_before_end = set(seen)
    finally:
        done.set()
        t.join()
    assert seen_before_end <= {3_000, 20_000} and 3_000 in seen_before_end
    assert store.count("refunds", P1, now=NOW) == 20_000
    store.close()
