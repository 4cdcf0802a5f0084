"""Stage data a record batch at a time: a stored partition read in batches, and an output written batch by batch.

The batch programs' stages after `eligible_candidates` (scoring, offers, the store and the export) never hold a
partition: their input is a `ParquetBatches` (the partition's Parquet file, read `batch_rows` rows at a time with
`pyarrow.parquet.ParquetFile.iter_batches`), and a stage that outputs a table returns a `BatchOutput` (its batches,
computed as the IO manager writes them with one `ParquetWriter`, and the partition's metadata, computed once the
file is complete).  So the run's memory follows the batch size, not the partition size.
"""

from __future__ import annotations

import contextlib
import itertools
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

from resources.file_mode import publish

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
        publish(tmp)  # mkstemp makes it owner-only; analysts and dbt read the stage files
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


# The order is decided on the keys alone (row number, group, score, tie-break, priority: a few bytes a row), and only
# then are the rows read again and sorted by their position: a window over whole rows cannot spill, and at 465,000
# wide rows it held ~600 MB (the 10M-row bench's offers stage); the key columns' window and the sort by one integer
# spill.  A NaN score or priority comes last, as NumPy's sorts put it (`decide_offers` ranks with them: a NaN first
# here had handed a customer's budget share to its NaN-scored subject).
# Ties are broken by values (the group's key, then the tie-break column), never by the row's place in the file:
# the stage files' row order varies from run to run (DuckDB writes them in parallel), and a re-run must decide the
# same offers (with positions as the tie-break, two runs of the 10M bench made 52,236 and 52,239 offers).
POSITIONS_SQL = """
WITH keys AS (
    SELECT file_row_number AS rn, {group} AS g, {score} AS s, {tiebreak} AS t, {priority} AS p
    FROM read_parquet({data}, file_row_number = true)
), known AS (
    SELECT rn, g, t, CASE WHEN isnan(s) THEN NULL ELSE s END AS s, CASE WHEN isnan(p) THEN NULL ELSE p END AS p
    FROM keys
), grouped AS (
    SELECT rn, g, s, t, first_value(p) OVER w AS gp
    FROM known
    WINDOW w AS (PARTITION BY g ORDER BY s DESC NULLS LAST, t, rn)
)
SELECT rn, row_number() OVER (ORDER BY gp DESC NULLS LAST, g, s DESC NULLS LAST, t, rn) AS position FROM grouped
"""
# The rows of positions (low, high], in position order.  A sort of all the rows at once needs more than the sort's
# memory to merge its runs past a couple of million rows (the 50M bench's 2.3M wide scored rows failed at 128 MB, when
# the offers stage sorted whole rows), so they are sorted a slice of positions at a time, each slice a full read of the
# file (`ORDER_SLICE_ROWS`).
SLICE_SQL = """
SELECT d.* EXCLUDE (file_row_number)
FROM read_parquet({data}, file_row_number = true) d
JOIN (SELECT rn, position FROM read_parquet({positions}) WHERE position > {low} AND position <= {high}) o
    ON o.rn = d.file_row_number
ORDER BY o.position
"""
ORDER_SLICE_ROWS = 500_000  # sorted within SORT_MEMORY (the 10M bench's 465,354 rows: one slice)
SORT_MEMORY = "128MB"  # DuckDB's budget for the sort; beyond it, it spills to a temporary folder


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ordered_groups(
    source: ParquetBatches,
    priority: str,
    group: str,
    score: str,
    tiebreak: str | None = None,
    sort_memory: str = SORT_MEMORY,
) -> Iterator[pa.Table]:
    """The source's rows in the order a budget is spent: groups of rows sharing `group` (a customer's subjects) by
    their best row's priority, highest first (the best row: highest `score`, then the lowest `tiebreak`, e.g. the
    subject), ties by the group's key; within a group, highest `score` first, then by `tiebreak` (by `group` when
    None); rows equal in all of these by position.  `priority`, `group`, `score` and `tiebreak` are columns of the
    source.  Yields tables of about `source.batch_rows` rows (the source's schema) that never split a group.  DuckDB
    sorts out of core: memory stays within `sort_memory` plus a batch, whatever the size."""
    with tempfile.TemporaryDirectory(prefix="engage-order-") as tmp, source.local_file() as data:
        schema = source.schema
        # One thread: each of DuckDB's threads holds its own sort buffers beside the batches in flight (two threads:
        # +71 MB on the 10M bench's 465,354 eligible rows, for 0.1 s less)
        con = duckdb.connect(
            config={"memory_limit": sort_memory, "temp_directory": os.path.join(tmp, "spill"), "threads": 1}
        )
        # Parquet's statistics leave NaN out, and DuckDB 2.0 folds `isnan(x)` to false from them (a NaN score read
        # back from a file was not NaN to POSITIONS_SQL): no statistics propagation on this private connection.
        con.execute("SET disabled_optimizers = 'statistics_propagation'")
        try:
            positions = os.path.join(tmp, "positions.parquet")
            keys = {
                "data": _literal(data),
                "group": _identifier(group),
                "score": _identifier(score),
                "tiebreak": _identifier(tiebreak or group),
                "priority": _identifier(priority),
            }
            con.execute(f"COPY ({POSITIONS_SQL.format(**keys)}) TO {_literal(positions)}")
            rows = source.num_rows
            slices = (
                con.sql(
                    SLICE_SQL.format(
                        data=keys["data"], positions=_literal(positions), low=low, high=low + ORDER_SLICE_ROWS
                    )
                ).to_arrow_reader(source.batch_rows)
                for low in range(0, max(rows, 1), ORDER_SLICE_ROWS)
            )
            yield from _whole_groups(itertools.chain.from_iterable(slices), schema, group, source.batch_rows)
        finally:
            con.close()


def _whole_groups(reader: Iterable[pa.RecordBatch], schema: pa.Schema, group: str, rows: int) -> Iterator[pa.Table]:
    """Re-cut sorted batches into tables of about `rows` rows (cast to `schema`) that never split a group: each cut
    goes at the end of the group holding its `rows`-th row; a group that may go on in the next batch is held.  DuckDB's
    reader hands out larger batches than asked (122,880 rows): cut as they are, they doubled a stage's memory."""
    held = schema.empty_table()
    emitted = False
    for batch in reader:
        table = pa.concat_tables([held, pa.Table.from_batches([batch]).cast(schema)])
        while table.num_rows >= rows:
            cut = _group_end(table.column(group), rows - 1)
            if cut is None:
                break  # the group goes on to the end of what has arrived: it may continue in the next batch
            emitted = True
            yield table.slice(0, cut).combine_chunks()
            table = table.slice(cut)
        held = table
    if held.num_rows or not emitted:
        yield held.combine_chunks()


def _group_end(keys: pa.ChunkedArray, row: int) -> int | None:
    """The index just past the group holding `row` (rows of a group are adjacent), None if it runs to the end."""
    differs = pc.not_equal(keys.slice(row), keys[row])
    offset = pc.index(differs, True).as_py()
    return None if offset < 0 else row + offset
