"""The export interface: Parquet per program and partition, registered as a warehouse table analysts can query.

Layout (same locally and in S3): `<root>/<program>/partition_key=<key>/candidates.parquet`, one file per
partition, so re-running a partition replaces its file instead of adding rows (idempotent backfills).
The registered table is named from the program with `-` turned into `_` (`abandoned-cart-recovery` ->
`abandoned_cart_recovery`), since Athena/Glue table names allow only lower-case letters, digits and `_`.

GDPR erasure reaches partitions written before the deletion: `erase_customers` reads each partition's
`customer_id` column only and rewrites (whole, atomically, as `write_partition` does) the partitions that hold an
erased customer, without their rows.  The `gdpr_erasure` job runs it daily for every program that has exports
(`programs()`), disabled ones included.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from typing import IO

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from resources.batches import write_batches

_PROGRAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# Dagster partition keys: dates, weeks, months, hours ("2026-11-21-13:00"); never a path separator.
_PARTITION_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")
PARTITION_COLUMN = "partition_key"
CUSTOMER_COLUMN = "customer_id"
FILE_NAME = "candidates.parquet"


def check_names(program: str, partition_key: str | None = None) -> None:
    """Reject names that would escape the export root or break the table name."""
    if not _PROGRAM.match(program):
        raise ValueError(f"program {program!r} is not a valid export name (letters, digits, '-', '_')")
    if partition_key is not None and not _PARTITION_KEY.match(partition_key):
        raise ValueError(f"partition key {partition_key!r} is not a valid export partition key")


def export_table_name(program: str) -> str:
    """The catalog table name for a program's exports: lower case, `-` -> `_`."""
    check_names(program)
    return program.lower().replace("-", "_")


# zstd: compact and fast to read. Microsecond timestamps: Hive/Athena readers do not take nanoseconds, and candidate
# timestamps carry nothing finer.
EXPORT_WRITER = {"compression": "zstd", "coerce_timestamps": "us", "allow_truncated_timestamps": True}


def write_parquet(table: pa.Table, where: str | IO[bytes]) -> None:
    """Write an export file the way every implementation does."""
    pq.write_table(table, where, **EXPORT_WRITER)


def write_parquet_batches(tables: Iterable[pa.Table], where: str | IO[bytes]) -> int:
    """`write_parquet` for a partition that comes a batch at a time (one writer, one file); the rows written."""
    return write_batches(tables, where, **EXPORT_WRITER)


class ExportResource(dg.ConfigurableResource, ABC):
    """Where a program's candidate partitions are exported, and the table that makes them queryable."""

    @abstractmethod
    def write_partition(self, program: str, partition_key: str, table: pa.Table) -> str:
        """Write (replacing) `<root>/<program>/partition_key=<key>/candidates.parquet`; return its URI."""

    @abstractmethod
    def write_partition_batches(self, program: str, partition_key: str, tables: Iterable[pa.Table]) -> tuple[str, int]:
        """`write_partition` for a partition that comes a batch at a time (never held whole): (URI, rows written)."""

    @abstractmethod
    def register(self, program: str) -> str:
        """Make the program's exports queryable as a table (DuckDB view / Glue table); return its name."""

    @abstractmethod
    def partition_keys(self, program: str) -> list[str]:
        """The program's exported partition keys, sorted."""

    @abstractmethod
    def programs(self) -> list[str]:
        """Every program with exported partitions, sorted: those no longer configured or disabled too (GDPR
        erasure reaches their exports)."""

    @abstractmethod
    def read_partition(self, program: str, partition_key: str, columns: list[str] | None = None) -> pa.Table:
        """One exported partition (only `columns`, if given)."""

    def erase_customers(self, program: str, customer_ids: Collection[str]) -> dict[str, int]:
        """Rewrite every exported partition of the program that holds one of these customers without their rows;
        returns {partition_key: rows removed} of the partitions rewritten (none: nothing held them)."""
        check_names(program)
        erased = pa.array(sorted({str(c) for c in customer_ids}), pa.string())
        removed: dict[str, int] = {}
        if not len(erased):
            return removed
        for key in self.partition_keys(program):
            ids = self.read_partition(program, key, [CUSTOMER_COLUMN]).column(CUSTOMER_COLUMN).cast(pa.string())
            if not pc.any(pc.is_in(ids, erased)).as_py():
                continue
            table = self.read_partition(program, key)
            keep = pc.invert(pc.is_in(table.column(CUSTOMER_COLUMN).cast(pa.string()), erased))
            kept = table.filter(keep)
            self.write_partition(program, key, kept)
            removed[key] = table.num_rows - kept.num_rows
        return removed
