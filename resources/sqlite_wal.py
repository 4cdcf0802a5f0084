"""SQLite in WAL mode for stores that several processes and threads share (candidate store, engagement store,
delivery ledger): one connection per thread and process, a busy timeout, and write transactions that take the
write lock up front (`BEGIN IMMEDIATE`), so two writers queue instead of deadlocking on a lock upgrade."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from resources.sqlite_migrations import migrate

_conns = threading.local()


def _key(path: str, schema: str, migrations: Sequence[str] = ()) -> tuple[int, str, int]:
    # Keyed by pid too: a connection inherited through fork must never be used by the child.
    return os.getpid(), os.path.abspath(path), hash((schema, *migrations))


def wal_connection(
    path: str, busy_timeout_ms: int, schema: str, pragmas: Iterable[str] = (), migrations: Sequence[str] = ()
) -> sqlite3.Connection:
    """This thread's connection to `path` (created, with `schema` and then the `migrations` it lacks applied
    (`resources.sqlite_migrations`), on first use)."""
    cache: dict | None = getattr(_conns, "by_key", None)
    if cache is None:
        cache = _conns.by_key = {}
    key = _key(path, schema, migrations)
    conn = cache.get(key)
    if conn is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; writes open their own BEGIN IMMEDIATE transactions.
        conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # Switching a new file to WAL and creating its schema can answer "database is locked" at once, without the
        # busy handler, when several processes open the same new file together (a backfill's runs on a fresh
        # ENGAGE_HOME): retry with backoff within the busy timeout.  Both steps are idempotent.
        retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"), busy_timeout_ms)
        # NORMAL in WAL: a committed transaction survives a process crash (SIGKILL); only an OS crash can drop the
        # last transactions.
        conn.execute("PRAGMA synchronous = NORMAL")
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
        if schema:
            retry_locked(lambda: conn.executescript(schema), busy_timeout_ms)
        if migrations:
            retry_locked(lambda: migrate(conn, migrations), busy_timeout_ms)
        cache[key] = conn
    return conn


def _locked(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and "locked" in str(err)


def retry_locked(step: Callable[[], object], busy_timeout_ms: int) -> None:
    """Run an idempotent setup step, retrying "database is locked" with backoff (5 ms doubling to 250 ms) until the
    busy timeout (tenacity); any other error, or the lock outlasting the timeout, is raised as it is."""
    timeout_s = busy_timeout_ms / 1000
    Retrying(
        retry=retry_if_exception(_locked),
        stop=stop_after_delay(timeout_s),
        wait=wait_exponential(multiplier=0.005, max=0.25),
        reraise=True,
    )(step)


def close_connection(path: str, schema: str, migrations: Sequence[str] = ()) -> None:
    """Close this thread's connection (other threads' connections close when their threads end)."""
    conn = (getattr(_conns, "by_key", None) or {}).pop(_key(path, schema, migrations), None)
    if conn is not None:
        conn.close()


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def chunked_in(
    conn: sqlite3.Connection,
    sql: str,
    values: list[Any],
    head: tuple[Any, ...] = (),
    tail: tuple[Any, ...] = (),
    size: int = 900,
) -> list[tuple]:
    """Run `sql` with its `IN ({})` filled with up to `size` placeholders at a time (SQLite's variable limit)."""
    out: list[tuple] = []
    for i in range(0, len(values), size):
        chunk = values[i : i + size]
        out.extend(conn.execute(sql.format(", ".join("?" * len(chunk))), (*head, *chunk, *tail)).fetchall())
    return out


class SqliteFileResource(dg.ConfigurableResource):
    """A resource kept in one SQLite file (WAL): a connection per (process, thread), its `SCHEMA` ensured on first
    use.  The stores that live in a file of their own mix it in beside their interface."""

    SCHEMA: ClassVar[str] = ""
    MIGRATIONS: ClassVar[tuple[str, ...]] = ()  # applied after SCHEMA, the ones the file lacks (user_version)
    PRAGMAS: ClassVar[tuple[str, ...]] = ()  # extra per-connection pragmas
    path: str
    busy_timeout_ms: int = 30_000

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (schema ensured on first use)."""
        return wal_connection(
            self.path, self.busy_timeout_ms, self.SCHEMA, pragmas=self.PRAGMAS, migrations=self.MIGRATIONS
        )

    def close(self) -> None:
        """Close this thread's connection."""
        close_connection(self.path, self.SCHEMA, self.MIGRATIONS)
