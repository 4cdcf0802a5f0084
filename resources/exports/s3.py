"""Production exports: Parquet objects in S3, catalogued as partitioned Glue tables Athena (and Snowflake) read.

`hive_type` / `glue_columns` turn the Arrow schema of the newest partition into the Glue table's columns;
`parquet_schema_from_s3` reads only that file's footer.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from resources.aws import AwsClientConfig
from resources.exports.base import (
    FILE_NAME,
    PARTITION_COLUMN,
    ExportResource,
    check_names,
    export_table_name,
    write_parquet,
    write_parquet_batches,
)

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


def parquet_schema_from_s3(s3: Any, bucket: str, key: str) -> pa.Schema:
    """Read only a Parquet file's footer (two small range GETs at most), not the whole object."""
    tail = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-65536")["Body"].read()
    if tail[-4:] != b"PAR1":
        raise ValueError(f"s3://{bucket}/{key} is not a Parquet file")
    footer_len = int.from_bytes(tail[-8:-4], "little")
    if footer_len + 8 > len(tail):
        tail = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{footer_len + 8}")["Body"].read()
    # The footer alone, framed by the magic bytes, is enough for Arrow to read the schema.
    return pq.read_schema(pa.BufferReader(b"PAR1" + tail[-(footer_len + 8) :]))


def _storage(columns: list[dict[str, str]], location: str) -> dict[str, Any]:
    return {
        "Columns": columns,
        "Location": location,
        "InputFormat": _PARQUET_INPUT,
        "OutputFormat": _PARQUET_OUTPUT,
        "SerdeInfo": {"SerializationLibrary": _PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
    }


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

    def _partition_key(self, program: str, partition_key: str) -> str:
        return f"{self._base(program)}/{PARTITION_COLUMN}={partition_key}/{FILE_NAME}"

    def _objects(self, s3: Any, program: str) -> list[tuple[str, dict[str, Any]]]:
        """(partition key, S3 listing entry) of every partition file the program has."""
        base = self._base(program)
        found = re.compile(rf"^{re.escape(base)}/{PARTITION_COLUMN}=([^/]+)/{re.escape(FILE_NAME)}$")
        objects = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{base}/"):
            objects += [(m.group(1), obj) for obj in page.get("Contents", []) if (m := found.match(obj["Key"]))]
        return objects

    def write_partition(self, program: str, partition_key: str, table: pa.Table) -> str:
        """PUT the partition's Parquet object, replacing any previous one; returns its s3:// URI."""
        check_names(program, partition_key)
        key = self._partition_key(program, partition_key)
        buffer = io.BytesIO()
        write_parquet(table, buffer)
        self.aws_client("s3").put_object(
            Bucket=self.bucket, Key=key, Body=buffer.getvalue(), ContentType="application/vnd.apache.parquet"
        )
        return f"s3://{self.bucket}/{key}"

    def write_partition_batches(self, program: str, partition_key: str, tables: Iterable[pa.Table]) -> tuple[str, int]:
        """`write_partition`, written a batch at a time into a local temporary file, then one PUT streamed from it
        (the object is never in memory)."""
        check_names(program, partition_key)
        key = self._partition_key(program, partition_key)
        with tempfile.TemporaryFile() as fh:
            rows = write_parquet_batches(tables, fh)
            fh.seek(0)
            self.aws_client("s3").put_object(
                Bucket=self.bucket, Key=key, Body=fh, ContentType="application/vnd.apache.parquet"
            )
        return f"s3://{self.bucket}/{key}", rows

    def partition_keys(self, program: str) -> list[str]:
        """The partition keys that have an object under the program's prefix, sorted."""
        check_names(program)
        return sorted(key for key, _ in self._objects(self.aws_client("s3"), program))

    def programs(self) -> list[str]:
        """The programs that have a partition object under the prefix, sorted."""
        s3 = self.aws_client("s3")
        prefix = self.prefix.strip("/")
        listed = f"{prefix}/" if prefix else ""
        names: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=listed, Delimiter="/"):
            names += [p["Prefix"][len(listed) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(n for n in names if re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", n) and self._objects(s3, n))

    def read_partition(self, program: str, partition_key: str, columns: list[str] | None = None) -> pa.Table:
        """GET the partition's object and read it (only `columns`, if given)."""
        check_names(program, partition_key)
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
        objects = self._objects(s3, program)
        if not objects:
            raise FileNotFoundError(f"no exported partitions for {program} under s3://{self.bucket}/{base}/")
        partitions = {key: f"s3://{self.bucket}/{base}/{PARTITION_COLUMN}={key}/" for key, _ in objects}
        newest = max(objects, key=lambda item: item[1]["LastModified"])[1]["Key"]
        columns = glue_columns(parquet_schema_from_s3(s3, self.bucket, newest))
        self._ensure_database(glue)
        self._upsert_table(glue, name, columns, f"s3://{self.bucket}/{base}/")
        self._add_partitions(glue, name, columns, partitions)
        return f"{self.glue_database}.{name}"

    def _upsert_table(self, glue: Any, name: str, columns: list[dict[str, str]], location: str) -> None:
        """Create the Glue table, or update it when its columns or location changed."""
        table_input = {
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "ZSTD"},
            "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": "string"}],
            "StorageDescriptor": _storage(columns, location),
        }
        try:
            current = glue.get_table(DatabaseName=self.glue_database, Name=name)["Table"]
        except glue.exceptions.EntityNotFoundException:
            glue.create_table(DatabaseName=self.glue_database, TableInput=table_input)
        else:
            sd = current.get("StorageDescriptor", {})
            if sd.get("Columns") != columns or sd.get("Location") != location:
                glue.update_table(DatabaseName=self.glue_database, TableInput=table_input)

    def _add_partitions(self, glue: Any, name: str, columns: list[dict[str, str]], partitions: dict[str, str]) -> None:
        """Add the partitions (key -> location) the Glue table does not have yet."""
        existing: set[str] = set()
        for page in glue.get_paginator("get_partitions").paginate(DatabaseName=self.glue_database, TableName=name):
            existing.update(p["Values"][0] for p in page.get("Partitions", []))
        missing = sorted(set(partitions) - existing)
        for start in range(0, len(missing), 100):  # BatchCreatePartition takes at most 100
            batch = [
                {"Values": [key], "StorageDescriptor": _storage(columns, partitions[key])}
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

    def _ensure_database(self, glue: Any) -> None:
        try:
            glue.get_database(Name=self.glue_database)
        except glue.exceptions.EntityNotFoundException:
            try:
                glue.create_database(DatabaseInput={"Name": self.glue_database})
            except glue.exceptions.AlreadyExistsException:
                pass  # another run created it meanwhile
