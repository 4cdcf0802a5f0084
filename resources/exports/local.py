"""Local exports: Parquet files under a local root, exposed as DuckDB views in the warehouse file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from resources.exports.base import (
    FILE_NAME,
    PARTITION_COLUMN,
    ExportResource,
    check_names,
    export_table_name,
    write_parquet,
    write_parquet_batches,
)
from resources.file_mode import publish
from resources.warehouse.duckdb import connect_duckdb


class LocalParquetExports(ExportResource):
    """Parquet files under a local root, exposed as DuckDB views `exports.<program>` in the warehouse file.

    The view reads the files at query time (hive partitioning, union by name), so partitions written after
    `register` show up without registering again, and a re-written partition replaces its rows.
    """

    root: str = Field(description="Directory that holds `<program>/partition_key=<key>/candidates.parquet`.")
    warehouse_path: str = Field(description="The DuckDB warehouse file that gets the `exports` views.")
    lock_timeout_s: float = Field(
        default=60.0, description="How long `register` waits for another process's lock on the warehouse."
    )

    def _program_dir(self, program: str) -> Path:
        return Path(self.root).resolve() / program

    def write_partition(self, program: str, partition_key: str, table: pa.Table) -> str:
        """Write the partition's file atomically (temp file + rename): readers see the old or the new file."""

        def write(fh: IO[bytes]) -> int:
            write_parquet(table, fh)
            return table.num_rows

        return self._replace_file(program, partition_key, write)[0]

    def write_partition_batches(self, program: str, partition_key: str, tables: Iterable[pa.Table]) -> tuple[str, int]:
        """`write_partition`, a batch at a time into the temp file."""
        return self._replace_file(program, partition_key, lambda fh: write_parquet_batches(tables, fh))

    def _replace_file(self, program: str, partition_key: str, write: Callable[[IO[bytes]], int]) -> tuple[str, int]:
        """`write(file)` into a temp file beside the partition's, then renamed over it: (path, rows written)."""
        check_names(program, partition_key)
        directory = self._program_dir(program) / f"{PARTITION_COLUMN}={partition_key}"
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / FILE_NAME
        # The temp name does not end in .parquet, so the view's glob never picks up a half-written file.
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{FILE_NAME}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                rows = write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            publish(tmp_name)  # mkstemp makes it owner-only; analysts read these files
            os.replace(tmp_name, target)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return str(target), rows

    def partition_keys(self, program: str) -> list[str]:
        """The partition keys that have a file under the program's directory, sorted."""
        check_names(program)
        prefix = f"{PARTITION_COLUMN}="
        return sorted(p.parent.name[len(prefix) :] for p in self._program_dir(program).glob(f"{prefix}*/{FILE_NAME}"))

    def programs(self) -> list[str]:
        """The programs that have a partition file under the root, sorted."""
        root = Path(self.root).resolve()
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if any(p.glob(f"{PARTITION_COLUMN}=*/{FILE_NAME}")))

    def read_partition(self, program: str, partition_key: str, columns: list[str] | None = None) -> pa.Table:
        """Read the partition's file (only `columns`, if given)."""
        check_names(program, partition_key)
        return pq.read_table(
            self._program_dir(program) / f"{PARTITION_COLUMN}={partition_key}" / FILE_NAME, columns=columns
        )

    def register(self, program: str) -> str:
        """Create or replace the view `exports.<program>` over the program's Parquet files."""
        name = export_table_name(program)
        program_dir = self._program_dir(program)
        if not any(program_dir.glob(f"{PARTITION_COLUMN}=*/{FILE_NAME}")):
            raise FileNotFoundError(f"no exported partitions for {program} under {program_dir}")
        pattern = str(program_dir / f"{PARTITION_COLUMN}=*" / FILE_NAME).replace("'", "''")
        # partition_key stays text whatever it looks like (DuckDB would read "2026-11-21" as a DATE but
        # "2026-11-21-13:00" as text), matching the Glue table's string partition key.
        sql = (
            f'CREATE OR REPLACE VIEW exports."{name}" AS SELECT * FROM read_parquet('
            f"'{pattern}', hive_partitioning = true, union_by_name = true, "
            f"hive_types = {{'{PARTITION_COLUMN}': VARCHAR}})"
        )
        conn = connect_duckdb(self.warehouse_path, read_only=False, lock_timeout_s=self.lock_timeout_s)
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS exports")
            conn.execute(sql)
        finally:
            conn.close()
        return f"exports.{name}"
