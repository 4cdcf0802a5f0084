"""The SQLite candidate store's partition write (issue 14): rows/s of `partition_write` (chunks added, then the
commit) for 25,000 and 250,000 candidates, beside a baseline measured in the same process.

Each size gets a fresh store file already holding one other partition of the same size (the indexes are not empty),
then two writes are timed: a new partition (every row an insert) and its re-run (every row an update of the same
customers, as a re-materialization does), both at the caller's CPU priority (`write_niceness=0`: the store's own
cost); the new partition is timed again with the write's thread niced as by default (`_niced_`: on a quiet machine
the same, on a busy one slower, by design: the serving processes keep the cores).  The records are shaped like
`pipeline.candidate_records` writes them, half of them with a churn reason (GSI5) and a tenth held out; they are
built before the clock starts (the store's cost, not the record builder's).  Each write is repeated three times (once with --quick) and the median reported.

The baseline: the same rows' column values (`upsert_rows`) inserted by one `executemany` into a table with the same
columns and no index, in a file of its own: what SQLite itself takes to write these bytes.  `ratio_to_plain_insert`
is the store write's time over that.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from resources.sqlite_wal import wal_connection
from resources.store.sqlite import SqliteCandidateStore
from resources.store.sqlite_schema import COLUMNS, upsert_rows

PROGRAM = "win-back-campaigns"
CHUNK = 5_000  # records per `add`, as the store stage's batches
NOW = 1_790_000_000
REASONS = ("price", "service", "competitor")


def _records(first: int, n: int, partition: str) -> list[dict[str, Any]]:
    """`n` candidates shaped like `candidate_records`' (customers `first` .. `first + n - 1`)."""
    out = []
    for i in range(first, first + n):
        rng = random.Random(i)
        score = rng.random()
        offer = "premium" if score >= 0.7 else "standard" if score >= 0.4 else "basic"
        hold = rng.random() < 0.1
        context: dict[str, Any] = {"time_zone": "UTC", "subscription_tier": "gold", "engagement_score": round(score, 3)}
        if i % 2:
            context["churn_reason"] = REASONS[i % 3]
        out.append(
            {
                "customerId": f"C{i:09d}",
                "programId": PROGRAM,
                "partitionKey": partition,
                "marketplace": "US",
                "subjectId": f"S{i:09d}",
                "segment": offer,
                "offerType": offer,
                "score": score,
                "scores": {"win-back-likelihood-v3": score},
                "modelVersions": {"win-back-likelihood-v3": "3f9a1c2b"},
                "offer": {"offerType": offer, "discount": 30, "durationMonths": 6, "valueUsd": 25.0},
                "holdout": hold,
                "channels": [] if hold else ["email", "sms"],
                "context": context,
                "createdAt": "2026-01-05T02:00:00+00:00",
                "expiresAt": NOW + 30 * 86_400,
            }
        )
    return out


def _write(store: SqliteCandidateStore, partition: str, records: list[dict[str, Any]]) -> float:
    """Seconds of one chunked partition write of `records`."""
    t = time.perf_counter()
    writer = store.partition_write(PROGRAM, partition, now=NOW)
    for i in range(0, len(records), CHUNK):
        writer.add(records[i : i + CHUNK])
    result = writer.commit()
    elapsed = time.perf_counter() - t
    if result.written != len(records):
        raise RuntimeError(f"wrote {result.written} of {len(records)} records")
    return elapsed


def _plain_insert(root: Path, records: list[dict[str, Any]]) -> float:
    """Seconds of the baseline: the same column values into an index-free table, one executemany, one commit."""
    conn = wal_connection(str(root / "plain.sqlite"), 30_000, "")
    conn.execute(f"CREATE TABLE IF NOT EXISTS plain ({COLUMNS})")
    conn.execute("DELETE FROM plain")
    t = time.perf_counter()
    rows = [row[:-1] for row in upsert_rows(records, PROGRAM, "2026-02-02", "w", NOW)]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO plain VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    return time.perf_counter() - t


def _size(n: int, repeats: int) -> dict[str, dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="bench_store_write_"))
    try:
        store = SqliteCandidateStore(path=str(root / "store.sqlite"), write_niceness=0)
        niced = SqliteCandidateStore(path=str(root / "store.sqlite"))  # the default: the write's thread niced
        _write(store, "2026-01-01", _records(0, n, "2026-01-01"))  # the partition already there
        records = _records(n, n, "2026-02-02")
        inserts, updates, niced_inserts, plain = [], [], [], []
        for _ in range(repeats):
            for writer, runs in ((store, inserts), (niced, niced_inserts)):
                store.replace_partition(PROGRAM, "2026-02-02", [], now=NOW)  # the partition absent again: inserts
                store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
                runs.append(_write(writer, "2026-02-02", records))
            updates.append(_write(store, "2026-02-02", records))  # the re-run: the same customers updated
            plain.append(_plain_insert(root, records))
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(plain)
    label = f"{n // 1000}k"
    note = f"median of {repeats}; a fresh store holding one other {n:,}-row partition; chunks of {CHUNK:,}"

    def metric(runs: list[float], what: str) -> dict[str, Any]:
        median = statistics.median(runs)
        return {
            "value": round(n / median),
            "unit": "rows/s",
            "spec": "",
            "note": f"{what}; {note}",
            "runs_s": [round(s, 3) for s in runs],
            "ratio_to_plain_insert": round(median / base, 2),
        }

    return {
        f"store_write_{label}_rows_per_s": metric(inserts, f"a new partition of {n:,} candidates (inserts)"),
        f"store_write_{label}_rerun_rows_per_s": metric(updates, "the same partition written again (updates)"),
        f"store_write_{label}_niced_rows_per_s": metric(
            niced_inserts, "a new partition, the write's thread niced as by default (on a busy machine it yields)"
        ),
        f"store_write_{label}_plain_insert_rows_per_s": {
            "value": round(n / base),
            "unit": "rows/s",
            "spec": "",
            "note": "the baseline, same process: the same column values into an index-free table (one executemany)",
            "runs_s": [round(s, 3) for s in plain],
        },
    }


def run(quick: bool = False) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for n in (25_000,) if quick else (25_000, 250_000):
        results.update(_size(n, 1 if quick else 3))
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
