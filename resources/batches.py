"""Stage data a record batch at a time: a stored partition read in batches, and an output written batch by batch.

The batch programs' stages after `eligible_candidates` (scoring, offers, the store and the export) never hold a
partition: their input is a `ParquetBatches` (the partition's Parquet file, read `batch_rows` rows at a time with
`pyarrow.parquet.ParquetFile.iter_batches`), and a stage that outputs a table returns a `BatchOutput` (its batches,
computed as the IO manager writes them with one `ParquetWriter`, and the partition's metadata, computed once the
file is complete).  So the run's memory follows the batch size, not the partition size.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from upath import UPath

BATCH_ROWS = 65_536  # rows per batch: a few tens of MB for the widest stage table
# The AssetIn metadata by which a stage asks the IO manager for its input as a `ParquetBatches`.
BATCHES = {"engage/batches": True}


def is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


class ParquetBatches:
    """A stage's stored partition, read `batch_rows` rows at a time (never the whole file)."""

    def __init__(self, path: UPath | str, batch_rows: int = BATCH_ROWS):
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be a positive number of rows, got {batch_rows!r}")
        self.path = path if isinstance(path, UPath) else UPath(path)
        self.batch_rows = batch_rows

    @contextlib.contextmanager
    def _file(self) -> Iterator[pq.ParquetFile]:
        fh: IO[bytes] = open(self.path.path, "rb") if is_local(self.path) else self.path.open("rb")
        with fh:
            yield pq.ParquetFile(fh)

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema (with its metadata, e.g. the model versions), from the footer."""
        with self._file() as f:
            return f.schema_arrow

    @property
    def num_rows(self) -> int:
        with self._file() as f:
            return f.metadata.num_rows

    def tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The partition as tables of at most `batch_rows` rows, in file order, each with the file's schema; an
        empty partition gives one empty table (a stage still sees the columns)."""
        with self._file() as f:
            schema = f.schema_arrow if columns is None else pa.schema([f.schema_arrow.field(c) for c in columns])
            schema = schema.with_metadata(f.schema_arrow.metadata)
            empty = True
            for batch in f.iter_batches(batch_size=self.batch_rows, columns=columns):
                empty = False
                yield pa.Table.from_batches([batch]).replace_schema_metadata(schema.metadata)
            if empty:
                yield schema.empty_table()

    def read(self, columns: list[str]) -> pa.Table:
        """Some columns of the whole partition (the narrow reads a partition's figures need)."""
        with self._file() as f:
            return f.read(columns=columns)

    @contextlib.contextmanager
    def local_file(self) -> Iterator[str]:
        """A local path of the file: itself, or a temporary copy of the object (streamed, for DuckDB)."""
        if is_local(self.path):
            yield self.path.path
            return
        with tempfile.TemporaryDirectory(prefix="engage-batches-") as tmp:
            local = os.path.join(tmp, "part.parquet")
            with self.path.open("rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
            yield local


@dataclass
class BatchOutput:
    """A stage's output for one partition: `batches` (at least one table, maybe empty; computed as they are
    written) and `metadata(path)`, the partition's metadata once every batch is written to `path`."""

    batches: Iterable[pa.Table]
    metadata: Callable[[str], dict[str, Any]]


STAGE_WRITER = {"compression": "zstd", "compression_level": 1}  # the stage files' Parquet options


class BatchWriter:
    """One Parquet file written a table at a time (`write_batches`; also for a stage's side output, such as the
    offers' rejections, written beside its batches).  The file takes the first table's schema; a later table with
    other types of the same columns is cast to it.  `options`: `ParquetWriter`'s keyword arguments."""

    def __init__(self, where: str | IO[bytes], **options: Any):
        self.where, self.options = where, options or STAGE_WRITER
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.where, table.schema, **self.options)
        elif not table.schema.equals(self.writer.schema, check_metadata=False):
            if table.schema.names != self.writer.schema.names:
                raise ValueError(f"a batch has columns {table.schema.names}, expected {self.writer.schema.names}")
            table = table.cast(self.writer.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> int:
        """Close the file; the rows written.  A writer that was given no table is an error (an empty partition
        gives one empty table)."""
        if self.writer is None:
            raise ValueError("a batch output gave no table (an empty partition gives one empty table)")
        self.writer.close()
        return self.rows


def write_batches(batches: Iterable[pa.Table], where: str | IO[bytes], **options: Any) -> int:
    """Write the tables into one Parquet file (a local path or an open file) with one `BatchWriter` (`options`:
    `ParquetWriter`'s keyword arguments, `STAGE_WRITER` by default); the number of rows written."""
    writer = BatchWriter(where, **options)
    try:
        for table in batches:
            writer.write(table)
    except BaseException:
        if writer.writer is not None:
            writer.writer.close()
        raise
    return writer.close()


def write_batches_to(batches: Iterable[pa.Table], path: UPath) -> int:
    """`write_batches` to a local path atomically (temp file + rename), or to an object store (a local temp file,
    then one upload: never the file in memory)."""
    if is_local(path):
        local = Path(path.path)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=local.parent, suffix=".tmp")
        os.close(fd)
        try:
            rows = write_batches(batches, tmp)
            os.replace(tmp, local)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return rows
    with tempfile.TemporaryDirectory(prefix="engage-batches-") as tmp:
        local_tmp = os.path.join(tmp, "part.parquet")
        rows = write_batches(batches, local_tmp)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.fs.put_file(local_tmp, path.path)
    return rows


GROUP_ORDER_SQL = """
WITH joined AS (
    SELECT d.*, p.priority AS __engage_priority
    FROM read_parquet({data}, file_row_number = true) d POSITIONAL JOIN read_parquet({priority}) p
), grouped AS (
    SELECT *, first_value(__engage_priority) OVER g AS __engage_group_priority,
           first_value(file_row_number) OVER g AS __engage_group_position
    FROM joined
    WINDOW g AS (PARTITION BY {group} ORDER BY {score} DESC, file_row_number)
)
SELECT * EXCLUDE (file_row_number, __engage_priority, __engage_group_priority, __engage_group_position)
FROM grouped
ORDER BY __engage_group_priority DESC, __engage_group_position, {score} DESC, file_row_number
"""
SORT_MEMORY = "256MB"  # DuckDB's budget for the sort; beyond it, it spills to a temporary folder


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ordered_groups(
    source: ParquetBatches, priorities: Iterable[pa.Array], group: str, score: str, sort_memory: str = SORT_MEMORY
) -> Iterator[pa.Table]:
    """The source's rows in the order a budget is spent: groups of rows sharing `group` (a customer's subjects) by
    their best row's priority, highest first (the best row: highest `score`, then first in the file), ties by that
    row's position; within a group, highest `score` first, then by position.  `priorities` gives one value per row,
    batch by batch in file order.  Yields tables of about `source.batch_rows` rows (the source's schema) that never
    split a group.  DuckDB sorts out of core: memory stays within `sort_memory` plus a batch, whatever the size."""
    with tempfile.TemporaryDirectory(prefix="engage-order-") as tmp, source.local_file() as data:
        priority_path = os.path.join(tmp, "priority.parquet")
        write_batches((pa.table({"priority": p}) for p in priorities), priority_path)
        schema = source.schema
        con = duckdb.connect(config={"memory_limit": sort_memory, "temp_directory": os.path.join(tmp, "spill")})
        try:
            sql = GROUP_ORDER_SQL.format(
                data=_literal(data),
                priority=_literal(priority_path),
                group=_identifier(group),
                score=_identifier(score),
            )
            yield from _whole_groups(con.sql(sql).to_arrow_reader(source.batch_rows), schema, group, source.batch_rows)
        finally:
            con.close()


def _whole_groups(reader: Iterable[pa.RecordBatch], schema: pa.Schema, group: str, rows: int) -> Iterator[pa.Table]:
    """Re-cut sorted batches so a group never straddles two (its tail is held for the next); cast to `schema`."""
    held = schema.empty_table()
    emitted = False
    for batch in reader:
        table = pa.concat_tables([held, pa.Table.from_batches([batch]).cast(schema)])
        if table.num_rows < rows:
            held = table
            continue
        keys = table.column(group)
        tail = pc.sum(pc.equal(keys, keys[table.num_rows - 1])).as_py()
        if tail < table.num_rows:
            emitted = True
            yield table.slice(0, table.num_rows - tail).combine_chunks()
        held = table.slice(table.num_rows - tail)
    if held.num_rows or not emitted:
        yield held.combine_chunks()
