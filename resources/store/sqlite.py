"""SQLite candidate store: the embedded default (ENGAGE_ENV=local), same key design as DynamoDB.

Why it looks the way it does:
- Several Dagster run processes (and dbt, and the serving API) touch the file at once, so the database runs in
  WAL mode (readers never block the single writer) with a busy timeout (a second writer waits instead of failing
  with "database is locked"), and every write is one `BEGIN IMMEDIATE` transaction (the writer lock is taken up
  front, so two writers never deadlock upgrading a read lock).
- sqlite3 connections must not be shared between threads (nor inherited across fork), so each (process, thread,
  file) gets its own connection, opened lazily.  The serving API can call one resource instance from many threads.
- The DynamoDB indexes become SQL indexes with the table's key appended as a tie-breaker, so pagination is keyset
  (`(score, pk) < (?, ?)`) on an index, never OFFSET: page 1,000 costs what page 1 costs (`sqlite_pages.py`).
- The record is stored whole as JSON (`body`) and returned unchanged; the other columns are copies used for keys,
  indexes and the TTL filter (`sqlite_schema.py`).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

import dagster as dg

from resources.sqlite_wal import SqliteFileResource, chunked_in, write_transaction
from resources.store.base import (
    CandidateStore,
    JsonPage,
    Page,
    PartitionWrite,
    Record,
    WriteResult,
    churn_scope,
    decode_cursor,
    resolve_now,
    since_key,
    validate_records,
)
from resources.store.sqlite_pages import (
    PageRows,
    by_score_sql,
    check_limit,
    churn_reason_sql,
    cursor_position,
    json_page,
    page,
)
from resources.store.sqlite_schema import (
    COUNT_PARTITION,
    CUSTOMER_ROWS,
    DELETE_STALE,
    DELETE_STALE_IN,
    MIGRATIONS,
    UPSERT,
    UPSERT_SCORES,
    customer_rows,
    dumps,
    loads,
    upsert_rows,
)
from resources.store.sqlite_write import WRITE_NICENESS, SqliteStagedWrite

_log = dg.get_dagster_logger("engage.store")


class SqliteCandidateStore(SqliteFileResource, CandidateStore):
    """Candidate store in one SQLite file (WAL), safe for many processes and threads.

    `path` must be a file path (not ":memory:": every thread opens its own connection, which would each see a
    different in-memory database).  `write_niceness`: how much lower than the process's the CPU priority of a
    partition write's thread is (`sqlite_write`; 0: the same).
    """

    write_niceness: int = WRITE_NICENESS
    MIGRATIONS = MIGRATIONS  # applied on open, the ones the file lacks (sqlite_schema, PRAGMA user_version)
    PRAGMAS = ("cache_size = -65536",)  # 64 MiB page cache: a 25k-record partition's index pages stay cached

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with write_transaction(self._conn()) as conn:
            yield conn

    # -- writes ------------------------------------------------------------------------------------------------

    def replace_partition(
        self, program_id: str, partition_key: str, records: Sequence[Record], now: float | None = None
    ) -> WriteResult:
        """Upsert `records` and delete the partition's other rows, in one transaction (readers see before or after).

        `written` counts rows inserted or updated; a record whose customer already holds a live candidate from a
        newer partition of the program is counted in `skipped_newer` and left alone.
        """
        return self.replace_partitions(program_id, {partition_key: records}, now=now)

    def partition_write(self, program_id: str, partition_key: str, now: float | None = None) -> PartitionWrite:
        """Chunks staged in a temp table of the write's own connection, in a thread of its own at a lower CPU priority
        (no lock, no WAL, no reader disturbed), then one short swap transaction (`sqlite_write`): readers see the
        partition before or after, never half-written."""
        return SqliteStagedWrite(self._conn, self.close, program_id, partition_key, now, self.write_niceness)

    def replace_partitions(
        self, program_id: str, partitions: Mapping[str, Sequence[Record]], now: float | None = None
    ) -> WriteResult:
        """`replace_partition` for each partition, all in ONE transaction (a reactive batch: one commit, not one per
        cart); readers see all of them or none."""
        now_ = resolve_now(now)
        result = WriteResult(batches=1)
        duplicates = 0
        write_id = uuid.uuid4().hex  # every row of this call: the partitions' other rows are the stale ones
        rows: list[tuple[Any, ...]] = []
        for partition_key, records in partitions.items():
            unique, dropped = validate_records(program_id, partition_key, records)
            duplicates += dropped
            rows += upsert_rows(unique, program_id, partition_key, write_id, now_)
        with self._write() as conn:
            # One statement for every partition's rows (a reactive batch holds one cart per partition: statements per
            # partition were most of its write time).
            written = conn.executemany(UPSERT, rows).rowcount if rows else 0
            result.written, result.skipped_newer = written, len(rows) - written
            keys = list(partitions)
            if len(keys) == 1:
                # Every row written now sits in this partition, so stale rows exist only if the partition holds more
                # rows than were written: an index-only count saves the delete's row-by-row scan on plain re-runs.
                in_partition = conn.execute(COUNT_PARTITION, (program_id, keys[0])).fetchone()[0]
                if in_partition > written:
                    result.deleted = conn.execute(DELETE_STALE, (program_id, keys[0], write_id)).rowcount
            elif keys:
                result.deleted = len(chunked_in(conn, DELETE_STALE_IN, keys, head=(program_id,), tail=(write_id,)))
        if duplicates:
            result.extra["duplicates_dropped"] = duplicates
        _log.info(
            "candidate store (sqlite): %s, %d partition(s) written=%d deleted=%d skipped_newer=%d"
            " duplicates_dropped=%d",
            program_id,
            len(partitions),
            result.written,
            result.deleted,
            result.skipped_newer,
            duplicates,
        )
        return result

    def delete_customer(self, customer_id: str) -> int:
        """Erase every candidate of the customer in every program (expired ones included): erasure requests."""
        with self._write() as conn:
            return conn.execute(f"DELETE FROM candidates WHERE {CUSTOMER_ROWS}", customer_rows(customer_id)).rowcount

    def expired_present(self, program_id: str, before: float) -> int:
        """Expired candidates of the program still in the file (until `purge_expired`)."""
        row = (
            self._conn()
            .execute("SELECT count(*) FROM candidates WHERE program_id = ? AND expires_at <= ?", (program_id, before))
            .fetchone()
        )
        return int(row[0])

    def purge_expired(self, now: float | None = None) -> int:
        """Physically delete expired candidates and cache entries (SQLite has no TTL sweeper; reads ignore them)."""
        now_ = resolve_now(now)
        with self._write() as conn:
            n = conn.execute("DELETE FROM candidates WHERE expires_at <= ?", (now_,)).rowcount
            n += conn.execute("DELETE FROM score_cache WHERE expires_at <= ?", (now_,)).rowcount
        return n

    # -- reads -------------------------------------------------------------------------------------------------

    def get(self, customer_id: str, program_id: str, now: float | None = None) -> Record | None:
        """The customer's live candidate in the program, or None."""
        row = (
            self._conn()
            .execute(
                "SELECT body FROM candidates WHERE pk = ? AND expires_at > ?",
                (f"{customer_id}#{program_id}", resolve_now(now)),
            )
            .fetchone()
        )
        return None if row is None else loads(row[0])

    def query_by_segment(
        self,
        program_id: str,
        segment: str,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
        offer_type: str | None = None,
    ) -> Page:
        """Keyset pagination on (score DESC, pk DESC) over index candidates_gsi1."""
        return page(*self._segment_rows(program_id, segment, min_score, limit, cursor, now, offer_type))

    def query_by_segment_json(
        self,
        program_id: str,
        segment: str,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
        offer_type: str | None = None,
    ) -> JsonPage:
        """`query_by_segment` as JSON: the stored records spliced into an array (the serving API's hot path)."""
        return json_page(*self._segment_rows(program_id, segment, min_score, limit, cursor, now, offer_type))

    def _segment_rows(
        self,
        program_id: str,
        segment: str,
        min_score: float | None,
        limit: int,
        cursor: str | None,
        now: float | None,
        offer_type: str | None,
    ) -> tuple[PageRows, int, str, str]:
        extra, extra_params = ("AND offer_type = ?", [offer_type]) if offer_type is not None else ("", [])
        scope = f"{program_id}#{segment}"
        kind = "sqlite-gsi1" if offer_type is None else f"sqlite-gsi1:{offer_type}"
        return self._by_score(
            "gsi1pk", "candidates_gsi1", kind, scope, min_score, limit, cursor, now, extra, extra_params
        )

    def query_by_score(
        self,
        program_id: str,
        offer_type: str,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        """Keyset pagination on (score DESC, pk DESC) over index candidates_gsi4 (offer type by score)."""
        return page(*self._score_rows(program_id, offer_type, min_score, limit, cursor, now))

    def query_by_score_json(
        self,
        program_id: str,
        offer_type: str,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> JsonPage:
        """`query_by_score` as JSON: the stored records spliced into an array (the serving API's hot path)."""
        return json_page(*self._score_rows(program_id, offer_type, min_score, limit, cursor, now))

    def _score_rows(
        self,
        program_id: str,
        offer_type: str,
        min_score: float | None,
        limit: int,
        cursor: str | None,
        now: float | None,
    ) -> tuple[PageRows, int, str, str]:
        scope = f"{program_id}#{offer_type}"
        return self._by_score(
            "gsi2pk",
            "candidates_gsi4",
            "sqlite-gsi4",
            scope,
            min_score,
            limit,
            cursor,
            now,
            "AND score IS NOT NULL",
            [],
        )

    def _by_score(
        self,
        key_col: str,
        index: str,
        kind: str,
        scope: str,
        min_score: float | None,
        limit: int,
        cursor: str | None,
        now: float | None,
        extra: str,
        extra_params: list[Any],
    ) -> tuple[PageRows, int, str, str]:
        """(rows of (body, score, pk), limit, cursor kind, cursor scope): one more row than `limit` if there is more."""
        sql, params = by_score_sql(key_col, index, kind, scope, min_score, limit, cursor, now, extra, extra_params)
        return self._conn().execute(sql, params).fetchall(), limit, kind, scope

    def query_by_offer_type(
        self,
        program_id: str,
        offer_type: str,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        """Keyset pagination on (partitionKey#customerId DESC) over index candidates_gsi2: newest partition first."""
        check_limit(limit)
        scope = f"{program_id}#{offer_type}"
        sql = "SELECT body, gsi2sk, pk FROM candidates WHERE gsi2pk = ? AND expires_at > ?"
        params: list[Any] = [scope, resolve_now(now)]
        if cursor is not None:
            last_sk, last_pk = cursor_position(decode_cursor(cursor, "sqlite-gsi2", scope), str, str)
            sql += " AND (gsi2sk, pk) < (?, ?)"
            params += [last_sk, last_pk]
        sql += " ORDER BY gsi2sk DESC, pk DESC LIMIT ?"
        params.append(limit + 1)
        rows = self._conn().execute(sql, params).fetchall()
        return page(rows, limit, "sqlite-gsi2", scope)

    def query_by_churn_reason(
        self,
        program_id: str,
        churn_reason: str,
        since_date: date | str | None = None,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        """Keyset pagination on (partition key DESC, score DESC, customer id DESC) over index candidates_gsi5."""
        return page(*self._churn_rows(program_id, churn_reason, since_date, min_score, limit, cursor, now))

    def query_by_churn_reason_json(
        self,
        program_id: str,
        churn_reason: str,
        since_date: date | str | None = None,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> JsonPage:
        """`query_by_churn_reason` as JSON: the stored records spliced into an array."""
        return json_page(*self._churn_rows(program_id, churn_reason, since_date, min_score, limit, cursor, now))

    def _churn_rows(
        self,
        program_id: str,
        churn_reason: str,
        since_date: date | str | None,
        min_score: float | None,
        limit: int,
        cursor: str | None,
        now: float | None,
    ) -> tuple[PageRows, int, str, str]:
        scope = churn_scope(program_id, churn_reason)
        since = since_key(since_date)
        sql, params = churn_reason_sql(program_id, churn_reason, scope, since, min_score, limit, cursor, now)
        return self._conn().execute(sql, params).fetchall(), limit, "sqlite-gsi5", scope

    def customer_candidates(self, customer_id: str, now: float | None = None) -> list[Record]:
        """The customer's live candidates in every program, by program id."""
        rows = (
            self._conn()
            .execute(
                f"SELECT body FROM candidates WHERE {CUSTOMER_ROWS} AND expires_at > ? ORDER BY program_id",
                (*customer_rows(customer_id), resolve_now(now)),
            )
            .fetchall()
        )
        return [loads(r[0]) for r in rows]

    def count(self, program_id: str, partition_key: str | None = None, now: float | None = None) -> int:
        """Live candidates of the program (of one partition, if given)."""
        sql = "SELECT COUNT(*) FROM candidates WHERE program_id = ? AND expires_at > ?"
        params: list[Any] = [program_id, resolve_now(now)]
        if partition_key is not None:
            sql += " AND partition_key = ?"
            params.append(partition_key)
        return int(self._conn().execute(sql, params).fetchone()[0])

    # -- score cache -------------------------------------------------------------------------------------------

    def get_cached_scores(self, namespace: str, keys: Iterable[str], now: float | None = None) -> dict[str, float]:
        """One query for any number of keys: the key list travels as one JSON parameter (no 999-variable limit)."""
        key_list = list(dict.fromkeys(keys))
        if not key_list:
            return {}
        rows = (
            self._conn()
            .execute(
                "SELECT key, score FROM score_cache WHERE namespace = ? AND expires_at > ?"
                " AND key IN (SELECT value FROM json_each(?))",
                (namespace, resolve_now(now), dumps(key_list)),
            )
            .fetchall()
        )
        return {k: float(s) for k, s in rows}

    def put_cached_scores(self, namespace: str, scores: Mapping[str, float], expires_at: int) -> int:
        """Upsert the scores (one transaction); the number written."""
        rows = [(namespace, k, float(v), int(expires_at)) for k, v in scores.items()]
        if not rows:
            return 0
        with self._write() as conn:
            conn.executemany(UPSERT_SCORES, rows)
        return len(rows)
