"""The shared SQLite setup: many processes opening the same new file at once (a backfill's runs on a fresh
ENGAGE_HOME) all get a WAL connection with the schema; none sees "database is locked"."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _open(path: str) -> str | None:
    from resources.delivery_ledger.sqlite import SCHEMA
    from resources.sqlite_wal import wal_connection

    try:
        conn = wal_connection(path, 60_000, SCHEMA)
        conn.execute("SELECT count(*) FROM touches").fetchone()
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    except sqlite3.OperationalError as err:
        return f"error: {err}"


def test_processes_opening_one_new_file_together_all_succeed(tmp_path: Path):
    # Before the retry, about 1 trial in 15 had a process fail with "database is locked" (8 processes per trial).
    # Spawned, not forked: a fork of the xdist worker (which runs threads) can deadlock on a lock a thread held;
    # and ProcessPoolExecutor, since multiprocessing.Pool.__exit__ can hang terminating its workers.
    with ProcessPoolExecutor(8, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_open, [str(tmp_path / f"warm{n}.sqlite") for n in range(8)]))  # every worker started
        for trial in range(40):
            path = str(tmp_path / f"t{trial}.sqlite")
            assert list(pool.map(_open, [path] * 8)) == ["wal"] * 8, trial
