"""The domain's SQL engine: in-process DuckDB over Arrow tables (no I/O: nothing but registered Arrow is read).

Opening a DuckDB database costs about 10 ms, which the event path (one cart, a few milliseconds of work) cannot
pay twice per event; a cursor on one shared in-memory database costs microseconds.  Each cursor is its own
connection: the tables it registers are visible to it alone, so threads never see each other's batches.  The
database is per process (a forked child opens its own).
"""

from __future__ import annotations

import atexit
import os
import threading

import duckdb

_lock = threading.Lock()
_databases: dict[int, duckdb.DuckDBPyConnection] = {}


def cursor() -> duckdb.DuckDBPyConnection:
    """A new connection to this process's shared in-memory database; close it when done."""
    pid = os.getpid()
    with _lock:
        database = _databases.get(pid)
        if database is None:
            _databases.clear()  # a parent's database must never be used after a fork
            database = _databases[pid] = duckdb.connect()
    return database.cursor()


@atexit.register
def _close_at_exit() -> None:
    """Close the database before the interpreter tears DuckDB's module down: one still open then is reported by
    nanobind as leaked DuckDB objects (noise on stderr at the end of a run, depending on the import order)."""
    with _lock:
        database = _databases.pop(os.getpid(), None)  # never a parent's, after a fork
    if database is not None:
        database.close()
