"""Schema versions of the SQLite stores (`resources.sqlite_migrations`): a file in an older schema opens, takes the
migrations it lacks in order (PRAGMA user_version), and serves what it held; a new file starts at the latest."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from resources.engagement.sqlite import MIGRATIONS as ENGAGEMENT_MIGRATIONS
from resources.engagement.sqlite import SqliteEngagementStore
from resources.sqlite_migrations import migrate, schema_version, statements
from resources.store.sqlite import SqliteCandidateStore
from resources.store.sqlite_schema import MIGRATIONS as STORE_MIGRATIONS
from resources.store.sqlite_schema import upsert_rows

NOW = 1_700_000_000
P1 = "2024-01-01"

# The candidate store's schema as it was before the holdout-aware churn index (commit 873e8ad's parent,
# resources/store/sqlite_schema.py: no candidates_gsi5, no user_version) is, word for word, migration 1.
OLD_STORE_SCHEMA = STORE_MIGRATIONS[0]
OLD_UPSERT = (
    "INSERT INTO candidates (pk, customer_id, program_id, partition_key, segment, offer_type, score, expires_at, "
    "created_at, gsi1pk, gsi2pk, gsi2sk, write_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def winback(customer: str, score: float, holdout: bool) -> dict[str, Any]:
    return {
        "customerId": customer,
        "programId": "winback",
        "partitionKey": P1,
        "segment": "premium",
        "offerType": "50pct",
        "score": score,
        "holdout": holdout,
        "context": {"churn_reason": "price"},
        "createdAt": f"{P1}T02:00:00Z",
        "expiresAt": NOW + 86_400,
    }


def indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return schema_version(conn)


def test_old_candidate_store_file_migrates_on_open_and_keeps_holdout_out_of_the_indexes(tmp_path):
    path = tmp_path / "store.sqlite"
    records = [winback("t1", 0.9, False), winback("h1", 0.95, True), winback("t2", 0.4, False)]
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_STORE_SCHEMA)
        conn.executemany(OLD_UPSERT, [row[:14] for row in upsert_rows(records, "winback", P1, "w1", NOW)])
    assert user_version(path) == 0 and "candidates_gsi5" not in indexes(path)

    store = SqliteCandidateStore(path=str(path))
    page = store.query_by_churn_reason("winback", "price", now=NOW)
    assert [r["customerId"] for r in page.items] == ["t1", "t2"]  # by score, the holdout candidate never served
    assert [r["customerId"] for r in store.query_by_segment("winback", "premium", now=NOW).items] == ["t1", "t2"]
    assert store.get("h1", "winback", now=NOW)["holdout"] is True  # held, found by customer
    assert store.count("winback", P1, now=NOW) == 3
    store.close()
    assert user_version(path) == len(STORE_MIGRATIONS) == 3 and "candidates_gsi5" in indexes(path)
    assert "candidates_customer" not in indexes(path)  # version 3: a customer's rows are found by key range

    # Writes after the migration behave as on a new file: moving t1 into the holdout takes it out of the index.
    store = SqliteCandidateStore(path=str(path))
    store.replace_partition("winback", P1, [winback("t1", 0.9, True), winback("h1", 0.95, False)], now=NOW)
    assert [r["customerId"] for r in store.query_by_churn_reason("winback", "price", now=NOW).items] == ["h1"]
    store.close()


def test_new_files_start_at_the_latest_version(tmp_path):
    store = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    store.count("x")
    store.close()
    engagement = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    engagement.is_deleted("c1")
    engagement.close()
    assert user_version(tmp_path / "store.sqlite") == len(STORE_MIGRATIONS)
    assert user_version(tmp_path / "engagement.sqlite") == len(ENGAGEMENT_MIGRATIONS) == 2  # 2: call assignment


def test_unversioned_engagement_file_is_adopted_with_its_data(tmp_path):
    path = tmp_path / "engagement.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(ENGAGEMENT_MIGRATIONS[0])
        conn.execute("INSERT INTO deletions (customer_id, deleted_at) VALUES ('c1', 1)")
    store = SqliteEngagementStore(path=str(path))
    assert store.is_deleted("c1") and not store.is_deleted("c2")
    store.close()
    assert user_version(path) == 2  # adopted at 1, then the call-assignment columns


def test_migrations_apply_in_order_once_and_atomically(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    steps = ("CREATE TABLE a (x INTEGER);\nINSERT INTO a VALUES (1);", "INSERT INTO a VALUES (2);")
    assert migrate(conn, steps) == 2 and migrate(conn, steps) == 2
    assert [r[0] for r in conn.execute("SELECT x FROM a ORDER BY x")] == [1, 2]  # each applied once, in order
    broken = (*steps, "INSERT INTO a VALUES (3);\nINSERT INTO nowhere VALUES (1);")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, broken)
    assert schema_version(conn) == 2 and [r[0] for r in conn.execute("SELECT x FROM a")] == [1, 2]  # rolled back
    with pytest.raises(RuntimeError, match="newer"):
        migrate(conn, steps[:1])  # a file newer than the code is refused
    assert list(statements("SELECT 1;\n\nSELECT ';';\n")) == ["SELECT 1;", "SELECT ';';"]


def test_concurrent_openers_migrate_once(tmp_path):
    path = tmp_path / "x.sqlite"
    steps = ("CREATE TABLE a (x INTEGER);", "INSERT INTO a VALUES (1);")
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            conn = sqlite3.connect(path, timeout=10, isolation_level=None)
            migrate(conn, steps)
            conn.close()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM a").fetchone()[0] == 1
