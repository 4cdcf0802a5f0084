"""Exports: Parquet per program and partition, registered as a warehouse table analysts can query.

Layout (same locally and in S3): `<root>/<program>/partition_key=<key>/candidates.parquet`, one file per
partition, so re-running a partition replaces its file instead of adding rows (idempotent backfills).
The registered table is named from the program with `-` turned into `_` (`abandoned-cart-recovery` ->
`abandoned_cart_recovery`), since Athena/Glue table names allow only lower-case letters, digits and `_`.

GDPR erasure reaches partitions written before the deletion: `erase_customers` reads each partition's
`customer_id` column only and rewrites (whole, atomically, as `write_partition` does) the partitions that hold an
erased customer, without their rows.  The `gdpr_erasure` job runs it daily for every program.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Collection
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from resources.aws import AwsClientConfig
from resources.warehouse.base import connect_duckdb


class ExportResource(dg.ConfigurableResource, ABC):
    @abstractmethod
    def write_partition(self, program: str, partition_key: str, table: pa.Table) -> str:
        """Write (replacing) `<root>/<program>/partition_key=<key>/candidates.parquet`; return its URI."""

    @abstractmethod
    def register(self, program: str) -> str:
        """Make the program's exports queryable as a table (DuckDB view / Glue table); return its name."""

    @abstractmethod
    def partition_keys(self, program: str) -> list[str]:
        """The program's exported partition keys, sorted."""

    @abstractmethod
    def read_partition(self, program: str, partition_key: str, columns: list[str] | None = None) -> pa.Table:
        """One exported partition (only `columns`, if given)."""

    def erase_customers(self, program: str, customer_ids: Collection[str]) -> dict[str, int]:
        """Rewrite every exported partition of the program that holds one of these customers without their rows;
        returns {partition_key: rows removed} of the partitions rewritten (none: nothing held them)."""
        _check_names(program)
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


_PROGRAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# Dagster partition keys: dates, weeks, months, hours ("2026-11-21-13:00"); never a path separator.
_PARTITION_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")
PARTITION_COLUMN = "partition_key"
CUSTOMER_COLUMN = "customer_id"
FILE_NAME = "candidates.parquet"


def _check_names(program: str, partition_key: str | None = None) -> None:
    """Reject names that would escape the export root or break the table name."""
    if not _PROGRAM.match(program):
        raise ValueError(f"program {program!r} is not a valid export name (letters, digits, '-', '_')")
    if partition_key is not None and not _PARTITION_KEY.match(partition_key):
        raise ValueError(f"partition key {partition_key!r} is not a valid export partition key")


def export_table_name(program: str) -> str:
    """The catalog table name for a program's exports: lower case, `-` -> `_`."""
    _check_names(program)
    return program.lower().replace("-", "_")


def _write_parquet(table: pa.Table, where: Any) -> None:
    # zstd: compact and fast to read. Microsecond timestamps: Hive/Athena readers do not take nanoseconds,
    # and candidate timestamps carry nothing finer.
    pq.write_table(table, where, compression="zstd", coerce_timestamps="us", allow_truncated_timestamps=True)


# ---------------------------------------------------------------------------------------------- local


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
        _check_names(program, partition_key)
        directory = self._program_dir(program) / f"{PARTITION_COLUMN}={partition_key}"
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / FILE_NAME
        # The temp name does not end in .parquet, so the view's glob never picks up a half-written file.
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{FILE_NAME}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                _write_parquet(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; analysts read these files
            os.replace(tmp_name, target)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return str(target)

    def partition_keys(self, program: str) -> list[str]:
        _check_names(program)
        prefix = f"{PARTITION_COLUMN}="
        return sorted(p.parent.name[len(prefix) :] for p in self._program_dir(program).glob(f"{prefix}*/{FILE_NAME}"))

    def read_partition(self, program: str, partition_key: str, columns: list[str] | None = None) -> pa.Table:
        _check_names(program, partition_key)
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


# ------------------------------------------------------------------------------------------- S3 + Glue

_PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
_PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
_PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"


def hive_type(arrow_type: pa.DataType) -> str:
    """The Glue (Hive DDL) type for an Arrow type, nested types included."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        return hive_type(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t):
        return "tinyint"
    if pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "int"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "decimal(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "string"
    if hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_map(t):
        return f"map<{hive_type(t.key_type)},{hive_type(t.item_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"array<{hive_type(t.value_type)}>"
    if pa.types.is_struct(t):
        fields = ",".join(f"{t.field(i).name.lower()}:{hive_type(t.field(i).type)}" for i in range(t.num_fields))
        return f"struct<{fields}>"
    raise ValueError(f"no Glue/Hive type for Arrow type {t}")


def glue_columns(schema: pa.Schema) -> list[dict[str, str]]:
    """Glue column list for an Arrow schema (Glue stores names lower-case; clashes are an error)."""
    columns = []
    seen: set[str] = set()
    for field in schema:
        name = field.name.lower()
        if name == PARTITION_COLUMN:
            continue  # it is the partition key, not a data column
        if name in seen:
            raise ValueError(f"columns clash once lower-cased for Glue: {name!r}")
        seen.add(name)
        columns.append({"Name": name, "Type": hive_type(field.type)})
    return columns


def _parquet_schema_from_s3(s3: Any, bucket: str, key: str) -> pa.Schema:
    """Read only a Parquet file's footer (two small range GETs at most), not the whole object."""
    tail = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-65536")["Body"].read()
    if tail[-4:] != b"PAR1":
        raise ValueError(f"s3://{bucket}/{key} is not a Parquet file")
    footer_len = int.from_bytes(tail[-8:-4], "little")
    if footer_len + 8 > len(tail):
        tail = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{footer_len + 8}")["Body"].read()
    # The footer alone, framed by the magic bytes, is enough for Arrow to read the schema.
    return pq.read_schema(pa.BufferReader(b"PAR1" + tail[-(footer_len + 8) :]))


class S3ParquetExports(AwsClientConfig, ExportResource):
    """Parquet objects in S3, catalogued as a partitioned Glue table that Athena (and Snowflake) can read.

    boto3 settings (region, endpoint, profile, keys, retries) are `AwsClientConfig`'s. A PUT replaces the
    object whole, so re-writing a partition is atomic.
    """

    bucket: str = Field(description="S3 bucket for exports.")
    prefix: str = Field(default="", description="Key prefix under which `<program>/...` objects go.")
    glue_database: str = Field(description="Glue database for the export tables (created if missing).")

    def _base(self, program: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{program}" if prefix else program

    def write_partition(self, program: str, partition_key: str, table: pa.Table) -> str:
        """PUT the partition's Parquet object, replacing any previous one; returns its s3:// URI."""
        _check_names(program, partition_key)
        key = self._partition_key(program, partition_key)
        buffer = io.BytesIO()
        _write_parquet(table, buffer)
        self.aws_client("s3").put_object(
            Bucket=self.bucket, Key=key, Body=buffer.getvalue(), ContentType="application/vnd.apache.parquet"
        )
        return f"s3://{self.bucket}/{key}"

    def _partition_key(self, program: str, partition_key: str) -> str:
        return f"{self._base(program)}/{PARTITION_COLUMN}={partition_key}/{FILE_NAME}"

    def partition_keys(self, program: str) -> list[str]:
        _check_names(program)
        base = self._base(program)
        found = re.compile(rf"^{re.escape(base)}/{PARTITION_COLUMN}=([^/]+)/{re.escape(FILE_NAME)}$")
        keys = []
        for page in (
            self.aws_client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{base}/")
        ):
            keys += [m.group(1) for obj in page.get("Contents", []) if (m := found.match(obj["Key"]))]
        return sorted(keys)

    def read_partition(self, program: str, partition_key: str, columns: list[str] | None = None) -> pa.Table:
        _check_names(program, partition_key)
        body = self.aws_client("s3").get_object(Bucket=self.bucket, Key=self._partition_key(program, partition_key))
        return pq.read_table(io.BytesIO(body["Body"].read()), columns=columns)

    def register(self, program: str) -> str:
        """Create or update the Glue table `<glue_database>.<program>` and add partitions not yet in it.

        The table's columns follow the most recently written partition (Athena reads Parquet by column
        name, so older partitions with fewer columns read NULL for the new ones).
        """
        name = export_table_name(program)
        s3 = self.aws_client("s3")
        glue = self.aws_client("glue")
        base = self._base(program)
        found = re.compile(rf"^{re.escape(base)}/{PARTITION_COLUMN}=([^/]+)/{re.escape(FILE_NAME)}$")

        partitions: dict[str, str] = {}
        newest: tuple[Any, str] | None = None
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{base}/"):
            for obj in page.get("Contents", []):
                match = found.match(obj["Key"])
                if not match:
                    continue
                partitions[match.group(1)] = f"s3://{self.bucket}/{base}/{PARTITION_COLUMN}={match.group(1)}/"
                if newest is None or obj["LastModified"] > newest[0]:
                    newest = (obj["LastModified"], obj["Key"])
        if newest is None:
            raise FileNotFoundError(f"no exported partitions for {program} under s3://{self.bucket}/{base}/")

        columns = glue_columns(_parquet_schema_from_s3(s3, self.bucket, newest[1]))
        self._ensure_database(glue)
        table_input = {
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "ZSTD"},
            "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": "string"}],
            "StorageDescriptor": self._storage(columns, f"s3://{self.bucket}/{base}/"),
        }
        try:
            current = glue.get_table(DatabaseName=self.glue_database, Name=name)["Table"]
        except glue.exceptions.EntityNotFoundException:
            glue.create_table(DatabaseName=self.glue_database, TableInput=table_input)
        else:
            sd = current.get("StorageDescriptor", {})
            if sd.get("Columns") != columns or sd.get("Location") != table_input["StorageDescriptor"]["Location"]:
                glue.update_table(DatabaseName=self.glue_database, TableInput=table_input)

        existing: set[str] = set()
        for page in glue.get_paginator("get_partitions").paginate(DatabaseName=self.glue_database, TableName=name):
            existing.update(p["Values"][0] for p in page.get("Partitions", []))
        missing = sorted(set(partitions) - existing)
        for start in range(0, len(missing), 100):  # BatchCreatePartition takes at most 100
            batch = [
                {"Values": [key], "StorageDescriptor": self._storage(columns, partitions[key])}
                for key in missing[start : start + 100]
            ]
            response = glue.batch_create_partition(
                DatabaseName=self.glue_database, TableName=name, PartitionInputList=batch
            )
            errors = [
                e
                for e in response.get("Errors", [])
                if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"
            ]
            if errors:
                detail = errors[0].get("ErrorDetail", {})
                raise RuntimeError(
                    f"Glue refused {len(errors)} partition(s) of {self.glue_database}.{name}: "
                    f"{detail.get('ErrorCode')}: {detail.get('ErrorMessage')}"
                )
        return f"{self.glue_database}.{name}"

    def _ensure_database(self, glue: Any) -> None:
        try:
            glue.get_database(Name=self.glue_database)
        except glue.exceptions.EntityNotFoundException:
            try:
                glue.create_database(DatabaseInput={"Name": self.glue_database})
            except glue.exceptions.AlreadyExistsException:
                pass  # another run created it meanwhile

    @staticmethod
    def _storage(columns: list[dict[str, str]], location: str) -> dict[str, Any]:
        return {
            "Columns": columns,
            "Location": location,
            "InputFormat": _PARQUET_INPUT,
            "OutputFormat": _PARQUET_OUTPUT,
            "SerdeInfo": {"SerializationLibrary": _PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        }
