"""The SQLite candidate store's chunked partition write: chunks staged off the live table, one short swap.

A partition's records arrive a chunk at a time (`SqliteCandidateStore.partition_write`).  Each chunk is staged in
a TEMP table of the writer's own connection: the temp database is private to the connection, so staging takes no
lock on the store file, writes nothing to its WAL and invalidates no reader's page cache, however long the batch
takes.  `commit` then replaces the partition in ONE transaction (`INSERT ... SELECT` from the stage with the upsert's
"newer partition wins" rule, then the stale rows' delete), all in SQLite's C code: readers see the partition
before or after, never half-replaced, as with `replace_partition`.

The swap's WAL frames are copied into the database file by one PASSIVE checkpoint after the commit (it never waits
on a reader; frames a reader still needs wait for the next checkpoint): the connection's automatic checkpoint is
off while the swap commits.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence

from resources.sqlite_wal import write_transaction
from resources.store.base import PartitionWrite, Record, WriteResult, resolve_now, validate_records
from resources.store.sqlite_schema import COUNT_PARTITION, DELETE_STALE, upsert_rows

COLUMNS = (
    "pk, customer_id, program_id, partition_key, segment, offer_type, score, expires_at, created_at, gsi1pk, gsi2pk,"
    " gsi2sk, write_id, body"
)
STAGE_SCHEMA = """
CREATE TEMP TABLE {name} (
    pk TEXT PRIMARY KEY, customer_id TEXT, program_id TEXT, partition_key TEXT, segment TEXT, offer_type TEXT,
    score REAL, expires_at INTEGER, created_at TEXT, gsi1pk TEXT, gsi2pk TEXT, gsi2sk TEXT, write_id TEXT, body TEXT
)
"""
# `WHERE true`: SQLite's parser needs it between INSERT ... SELECT and an ON CONFLICT clause.
SWAP = f"""
INSERT INTO candidates ({COLUMNS}) SELECT {COLUMNS} FROM {{name}} WHERE true
ON CONFLICT (pk) DO UPDATE SET
    partition_key = excluded.partition_key, segment = excluded.segment, offer_type = excluded.offer_type,
    score = excluded.score, expires_at = excluded.expires_at, created_at = excluded.created_at,
    gsi1pk = excluded.gsi1pk, gsi2pk = excluded.gsi2pk, gsi2sk = excluded.gsi2sk,
    write_id = excluded.write_id, body = excluded.body
WHERE excluded.partition_key >= candidates.partition_key OR candidates.expires_at <= ?
"""
AUTOCHECKPOINT_PAGES = 1_000  # SQLite's default, restored after the swap


class SqliteStagedWrite(PartitionWrite):
    """See the module docstring.  `conn` is the writing thread's connection to the store file."""

    def __init__(self, conn: sqlite3.Connection, program_id: str, partition_key: str, now: float | None = None):
        validate_records(program_id, partition_key, [])  # the keys themselves, before anything is staged
        self.conn, self.program_id, self.partition_key = conn, program_id, partition_key
        self.now = resolve_now(now)
        self.write_id = uuid.uuid4().hex
        self.name = f"temp.stage_{self.write_id}"
        self.duplicates = 0  # within a chunk; a customer re-added in a later chunk is counted at commit
        self.added = 0
        self.conn.execute(STAGE_SCHEMA.format(name=self.name))
        self.open = True

    def add(self, records: Sequence[Record]) -> None:
        """Stage a chunk: validated as `replace_partition` validates; a customer staged again replaces its row."""
        self._check_open()
        unique, dropped = validate_records(self.program_id, self.partition_key, records)
        self.duplicates += dropped
        self.added += len(unique)
        rows = [row[:-1] for row in upsert_rows(unique, self.program_id, self.partition_key, self.write_id, self.now)]
        self.conn.execute("BEGIN")  # deferred, and it writes the temp database only: no lock on the store file
        try:
            self.conn.executemany(f"INSERT OR REPLACE INTO {self.name} VALUES ({', '.join('?' * 14)})", rows)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def commit(self) -> WriteResult:
        """The swap: one transaction, then a passive checkpoint."""
        self._check_open()
        result = WriteResult(batches=1)
        staged = int(self.conn.execute(f"SELECT count(*) FROM {self.name}").fetchone()[0])
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        try:
            with write_transaction(self.conn) as conn:
                written = conn.execute(SWAP.format(name=self.name), (self.now,)).rowcount if staged else 0
                in_partition = conn.execute(COUNT_PARTITION, (self.program_id, self.partition_key)).fetchone()[0]
                if in_partition > written:
                    result.deleted = conn.execute(
                        DELETE_STALE, (self.program_id, self.partition_key, self.write_id)
                    ).rowcount
            result.written, result.skipped_newer = written, staged - written
        finally:
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
            self._drop()
        checkpoint_passive(self.conn)
        duplicates = self.duplicates + self.added - staged
        if duplicates:
            result.extra["duplicates_dropped"] = duplicates
        return result

    def abort(self) -> None:
        if self.open:
            self._drop()

    def _drop(self) -> None:
        self.open = False
        self.conn.execute(f"DROP TABLE IF EXISTS {self.name}")

    def _check_open(self) -> None:
        if not self.open:
            raise RuntimeError("this partition write was committed or aborted already")


def checkpoint_passive(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Copy the WAL's frames into the database file without waiting on anyone (PASSIVE: frames a reader still needs
    stay for the next checkpoint); (busy, WAL frames, frames checkpointed)."""
    busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(log), int(done)
