"""The SQLite candidate store's stored form: the schema, the write statements, and the JSON codec of `body`.

The DynamoDB indexes become SQL indexes with the table's key appended as a tie-breaker, so pagination is keyset
(`(score, pk) < (?, ?)`) on an index, never OFFSET.  The record is stored whole as JSON (`body`) and returned
unchanged; the other columns are copies used for keys, indexes and the TTL filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engage_assets.domain.bulk import collector_paused
from resources.store.base import Record, churn_index_key, index_keys

try:  # orjson is ~5x faster on 25k records; the stdlib is the fallback, with the same output for JSON-clean data
    import orjson

    def dumps(obj: Any) -> str:
        """`obj` as compact JSON text (numpy scalars as numbers)."""
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()

    loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    import json

    def dumps(obj: Any) -> str:
        """`obj` as compact JSON text (numpy scalars as numbers)."""
        return json.dumps(obj, separators=(",", ":"), default=lambda o: o.item())  # numpy scalars

    loads = json.loads

# Version 1: the first versioned schema (a file written before versioning, at user_version 0, has it already).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS candidates (
    pk            TEXT PRIMARY KEY,      -- customerId#programId
    customer_id   TEXT NOT NULL,
    program_id    TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    segment       TEXT,
    offer_type    TEXT,
    score         REAL,
    expires_at    INTEGER NOT NULL,
    created_at    TEXT,
    gsi1pk        TEXT,                  -- programId#segment   (NULL: not in the segment index)
    gsi2pk        TEXT,                  -- programId#offerType (NULL: not in the offer-type index)
    gsi2sk        TEXT NOT NULL,         -- partitionKey#customerId
    write_id      TEXT NOT NULL,         -- the replace_partition call that last wrote the row
    body          TEXT NOT NULL          -- the record, JSON
);
CREATE INDEX IF NOT EXISTS candidates_gsi1 ON candidates (gsi1pk, score DESC, pk DESC);
CREATE INDEX IF NOT EXISTS candidates_gsi2 ON candidates (gsi2pk, gsi2sk DESC, pk DESC);
CREATE INDEX IF NOT EXISTS candidates_gsi4 ON candidates (gsi2pk, score DESC, pk DESC) WHERE score IS NOT NULL;
CREATE INDEX IF NOT EXISTS candidates_partition ON candidates (program_id, partition_key);
CREATE INDEX IF NOT EXISTS candidates_customer ON candidates (customer_id);
CREATE TABLE IF NOT EXISTS score_cache (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    score      REAL NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"""

# Version 2: GSI5 (churn reason, then partition date and score; live non-holdout scored candidates only) is an index
# on the stored record's own fields, so a file written before it needs no new column: the migration builds it from
# the bodies.  Its WHERE (scored, not held out) is repeated word for word by the query (CHURN_INDEX_WHERE), so the
# planner may use the partial index.
GSI5_INDEX = """
CREATE INDEX IF NOT EXISTS candidates_gsi5 ON candidates
    (program_id, json_extract(body, '$.context.churn_reason'), partition_key DESC, score DESC, customer_id DESC)
    WHERE score IS NOT NULL AND coalesce(json_extract(body, '$.holdout'), 0) = 0;
"""

# Version 3, fewer index updates per written row (issue 14: the store write's cost per row):
# - GSI5's key on a real column, written with the row (`churn_reason`: the record's churn reason when the record is in
#   the index, `churn_index_key`; NULL otherwise), and the index partial on it.  The version-2 index evaluated
#   json_extract over each body three times per written row, and held every scored non-holdout row, with a churn
#   reason or not.  The migration fills the column from the bodies by churn_index_key's rule (a non-empty string
#   reason, a score, not held out).
# - No index on customer_id: the key `customerId#programId` finds a customer's rows by range (`CUSTOMER_ROWS`).
GSI5_COLUMN = """
ALTER TABLE candidates ADD COLUMN churn_reason TEXT;
UPDATE candidates SET churn_reason = json_extract(body, '$.context.churn_reason')
    WHERE score IS NOT NULL AND coalesce(json_extract(body, '$.holdout'), 0) = 0
      AND json_type(body, '$.context.churn_reason') = 'text' AND json_extract(body, '$.context.churn_reason') <> '';
DROP INDEX IF EXISTS candidates_gsi5;
CREATE INDEX candidates_gsi5 ON candidates
    (program_id, churn_reason, partition_key DESC, score DESC, customer_id DESC) WHERE churn_reason IS NOT NULL;
DROP INDEX IF EXISTS candidates_customer;
"""

# The file's migrations, applied in order on open (`resources.sqlite_migrations`; PRAGMA user_version = how many a
# file has had).  Append a new one; never edit one that has shipped.
MIGRATIONS = (SCHEMA_V1, GSI5_INDEX, GSI5_COLUMN)

# A customer's rows in every program: their keys `customerId#...` lie in [customerId#, customerId$) ('$' follows '#');
# the customer_id test drops a longer id that starts with `customerId#` (ids may hold '#').  `customer_rows` binds it.
CUSTOMER_ROWS = "pk >= ? AND pk < ? AND customer_id = ?"


def customer_rows(customer_id: str) -> tuple[str, str, str]:
    """The parameters of `CUSTOMER_ROWS` for one customer."""
    return f"{customer_id}#", f"{customer_id}$", customer_id


# `churn_reason = ?` implies the partial index's `churn_reason IS NOT NULL`, so the planner may use it.
CHURN_INDEX_WHERE = "program_id = ? AND churn_reason = ?"

# The columns a write sets, in `upsert_rows` order (its last parameter, `now`, is the conflict rule's).
COLUMNS = (
    "pk, customer_id, program_id, partition_key, segment, offer_type, score, expires_at, created_at, gsi1pk, gsi2pk,"
    " gsi2sk, write_id, body, churn_reason"
)

# An existing row is replaced when the incoming one is from the same or a newer partition, or when the existing
# one has expired: an expired item counts as absent, so the outcome never depends on when expired rows are purged
# (DynamoDB's TTL deletes lazily; both backends must agree).
NEWER_WINS = "excluded.partition_key >= candidates.partition_key OR candidates.expires_at <= ?"
UPDATE_ON_CONFLICT = f"""
ON CONFLICT (pk) DO UPDATE SET
    partition_key = excluded.partition_key, segment = excluded.segment, offer_type = excluded.offer_type,
    score = excluded.score, expires_at = excluded.expires_at, created_at = excluded.created_at,
    gsi1pk = excluded.gsi1pk, gsi2pk = excluded.gsi2pk, gsi2sk = excluded.gsi2sk,
    write_id = excluded.write_id, body = excluded.body, churn_reason = excluded.churn_reason
WHERE {NEWER_WINS}
"""
UPSERT = f"INSERT INTO candidates ({COLUMNS}) VALUES ({', '.join('?' * 15)}){UPDATE_ON_CONFLICT}"

# Every row of this (program, partition) that the current call did not write is no longer a candidate.
DELETE_STALE = "DELETE FROM candidates WHERE program_id = ? AND partition_key = ? AND write_id <> ?"
# Several partitions at once (`chunked_in` fills the IN list); RETURNING, so the chunks' deletions can be counted.
DELETE_STALE_IN = "DELETE FROM candidates WHERE program_id = ? AND partition_key IN ({}) AND write_id <> ? RETURNING pk"

COUNT_PARTITION = "SELECT COUNT(*) FROM candidates WHERE program_id = ? AND partition_key = ?"

UPSERT_SCORES = (
    "INSERT INTO score_cache (namespace, key, score, expires_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (namespace, key) DO UPDATE SET score = excluded.score, expires_at = excluded.expires_at"
)


def upsert_rows(
    records: Sequence[Record], program_id: str, partition_key: str, write_id: str, now: float
) -> list[tuple[Any, ...]]:
    """The `UPSERT` parameters of each record: its key, index and TTL columns, the JSON body, and `now` (an
    expired existing row is replaced whatever its partition)."""
    rows = []
    with collector_paused():  # acyclic tuples: the collector's passes cost more than building them
        for rec in records:
            customer_id = rec["customerId"]
            segment, offer_type, score = rec.get("segment"), rec.get("offerType"), rec.get("score")
            rows.append(
                (
                    f"{customer_id}#{program_id}",
                    customer_id,
                    program_id,
                    partition_key,
                    segment,
                    offer_type,
                    None if score is None else float(score),
                    int(rec["expiresAt"]),
                    rec.get("createdAt"),
                    *index_keys(rec, program_id),
                    f"{partition_key}#{customer_id}",
                    write_id,
                    dumps(rec),
                    churn_index_key(rec, program_id) and rec["context"]["churn_reason"],
                    now,
                )
            )
    return rows
