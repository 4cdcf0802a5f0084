"""Schema versions of the SQLite files: `PRAGMA user_version` is the number of migrations a file has had, and
opening a file applies the ones it lacks, in order, each in its own `BEGIN IMMEDIATE` transaction together with its
version bump (so a crash leaves a file at one version or the next, and two processes opening an old file together
queue: the second finds the version already raised and skips the step).

A store's migrations are a tuple of SQL scripts: the first is the store's first schema (`CREATE … IF NOT EXISTS`,
so a file written before versioning, at user_version 0, takes it as a no-op), each later one the change that
followed.  Statements inside a script run one by one (`executescript` would commit the open transaction).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence


def statements(script: str) -> Iterator[str]:
    """The complete SQL statements of `script`, in order (split where `sqlite3.complete_statement` says one ends)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip().strip(";").strip():
                yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's `PRAGMA user_version`: how many migrations it has had."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Apply the migrations the file lacks (user_version v: migrations[v:]), in order; the version reached.  A file
    at a newer version than this code knows is refused (an older release must not write a newer schema)."""
    if schema_version(conn) > len(migrations):
        raise RuntimeError(f"schema version {schema_version(conn)} is newer than this code's {len(migrations)}")
    for version, script in enumerate(migrations, start=1):
        if schema_version(conn) >= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) < version:  # another process may have migrated while this one waited
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return schema_version(conn)
