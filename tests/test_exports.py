"""Exports: local Parquet + DuckDB views against a real DuckDB file, S3 + Glue against a moto server."""

import datetime as dt
import io
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resources.exports.local import LocalParquetExports
from resources.exports.s3 import S3ParquetExports, glue_columns, hive_type
from resources.warehouse.duckdb import DuckDBWarehouse

PROGRAM = "churn-prevention"


def candidates(customers: list[str], score: float = 0.5, **extra_columns) -> pa.Table:
    n = len(customers)
    columns = {
        "customerId": pa.array(customers),
        "score": pa.array([score] * n, pa.float64()),
        "scores": pa.array([{"churn_v3": score}] * n, pa.map_(pa.string(), pa.float64())),
        "channels": pa.array([["email", "push"]] * n, pa.list_(pa.string())),
        "createdAt": pa.array([dt.datetime(2026, 11, 21, 2, 0, 0, 123456)] * n, pa.timestamp("ns", tz="UTC")),
    }
    columns.update(extra_columns)
    return pa.table(columns)


@contextmanager
def lock_held(path: str, seconds: float):
    """Another OS process holding the DuckDB file read-write for `seconds`."""
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
        "time.sleep(float(sys.argv[2])); c.close()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------------- local


@pytest.fixture
def local(tmp_path):
    warehouse = str(tmp_path / "warehouse.duckdb")
    duckdb.connect(warehouse).close()
    return LocalParquetExports(root=str(tmp_path / "exports"), warehouse_path=warehouse), warehouse


def _query(warehouse: str, sql: str) -> list[dict]:
    return DuckDBWarehouse(path=warehouse).query_arrow(sql).to_pylist()


def test_local_partitions_are_queryable_through_the_view(local, tmp_path):
    exports, warehouse = local
    first = exports.write_partition(PROGRAM, "2026-11-21", candidates(["c1", "c2"]))
    exports.write_partition(PROGRAM, "2026-11-22", candidates(["c3"]))
    assert first == str(tmp_path / "exports" / PROGRAM / "partition_key=2026-11-21" / "candidates.parquet")
    meta = pq.ParquetFile(first).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"

    assert exports.register(PROGRAM) == "exports.churn_prevention"
    rows = _query(warehouse, 'SELECT "customerId", partition_key FROM exports.churn_prevention ORDER BY 1')
    assert rows == [
        {"customerId": "c1", "partition_key": "2026-11-21"},
        {"customerId": "c2", "partition_key": "2026-11-21"},
        {"customerId": "c3", "partition_key": "2026-11-22"},
    ]
    # nested types survive the round trip
    [row] = _query(warehouse, "SELECT scores, channels FROM exports.churn_prevention WHERE \"customerId\" = 'c3'")
    assert row["channels"] == ["email", "push"] and dict(row["scores"]) == {"churn_v3": 0.5}


def test_local_rewrite_replaces_the_partition_and_leaves_no_temp_files(local, tmp_path):
    exports, warehouse = local
    exports.write_partition(PROGRAM, "2026-11-21", candidates(["c1", "c2"]))
    exports.write_partition(PROGRAM, "2026-11-22", candidates(["c3"]))
    exports.register(PROGRAM)
    exports.write_partition(PROGRAM, "2026-11-21", candidates(["c9"], score=0.9))  # the re-run

    rows = _query(warehouse, 'SELECT partition_key, "customerId", score FROM exports.churn_prevention ORDER BY 1, 2')
    assert rows == [
        {"partition_key": "2026-11-21", "customerId": "c9", "score": 0.9},
        {"partition_key": "2026-11-22", "customerId": "c3", "score": 0.5},
    ]
    files = sorted(
        p.relative_to(tmp_path / "exports").as_posix() for p in (tmp_path / "exports").rglob("*") if p.is_file()
    )
    assert files == [
        f"{PROGRAM}/partition_key=2026-11-21/candidates.parquet",
        f"{PROGRAM}/partition_key=2026-11-22/candidates.parquet",
    ]


def test_local_failed_write_keeps_the_previous_file(local, monkeypatch):
    exports, _ = local
    path = exports.write_partition(PROGRAM, "2026-11-21", candidates(["c1"]))

    def broken_writer(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken_writer)
    with pytest.raises(OSError, match="disk full"):
        exports.write_partition(PROGRAM, "2026-11-21", candidates(["c2"]))
    monkeypatch.undo()
    assert pq.read_table(path).column("customerId").to_pylist() == ["c1"]
    assert [p.name for p in Path(path).parent.iterdir()] == ["candidates.parquet"]


def test_local_view_unions_partitions_with_different_columns(local):
    exports, warehouse = local
    exports.write_partition(PROGRAM, "2026-11-21", candidates(["c1"]))
    exports.write_partition(PROGRAM, "2026-11-22", candidates(["c2"], segment=pa.array(["high"])))
    exports.register(PROGRAM)
    rows = _query(warehouse, 'SELECT "customerId", segment FROM exports.churn_prevention ORDER BY 1')
    assert rows == [{"customerId": "c1", "segment": None}, {"customerId": "c2", "segment": "high"}]


def test_local_hourly_keys_and_later_partitions_need_no_re_register(local):
    exports, warehouse = local
    exports.write_partition("abandoned-cart-recovery", "2026-11-21-13:00", candidates(["c1"]))
    name = exports.register("abandoned-cart-recovery")
    exports.write_partition("abandoned-cart-recovery", "2026-11-21-14:00", candidates(["c2"]))
    rows = _query(warehouse, f"SELECT partition_key FROM {name} ORDER BY 1")
    assert rows == [{"partition_key": "2026-11-21-13:00"}, {"partition_key": "2026-11-21-14:00"}]


def test_local_register_waits_for_the_warehouse_lock(local):
    exports, warehouse = local
    exports.write_partition(PROGRAM, "2026-11-21", candidates(["c1"]))
    with lock_held(warehouse, 1.0):
        started = time.monotonic()
        exports.register(PROGRAM)
        assert time.monotonic() - started >= 0.5
    assert _query(warehouse, "SELECT count(*) AS n FROM exports.churn_prevention") == [{"n": 1}]


def test_local_rejects_unsafe_names_and_empty_registration(local):
    exports, _ = local
    with pytest.raises(ValueError):
        exports.write_partition(PROGRAM, "../../etc", candidates(["c1"]))
    with pytest.raises(ValueError):
        exports.write_partition("../evil", "2026-11-21", candidates(["c1"]))
    with pytest.raises(FileNotFoundError):
        exports.register("win-back-campaigns")


# ------------------------------------------------------------------------------------------- S3 + Glue


@pytest.fixture
def s3_exports(moto_endpoint):
    bucket = f"engage-exports-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    glue = boto3.client("glue", region_name="us-east-1", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    exports = S3ParquetExports(
        bucket=bucket,
        prefix="engage/exports/",
        region_name="us-east-1",
        endpoint_url=moto_endpoint,
        glue_database=f"engage_exports_{uuid.uuid4().hex[:8]}",
    )
    return exports, s3, glue


def _keys(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def _read(s3, bucket: str, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def test_s3_write_partitions_and_rewrite_replaces(s3_exports):
    exports, s3, _ = s3_exports
    uri = exports.write_partition(PROGRAM, "2026-11-21", candidates(["c1", "c2"]))
    exports.write_partition(PROGRAM, "2026-11-22", candidates(["c3"]))
    key1 = f"engage/exports/{PROGRAM}/partition_key=2026-11-21/candidates.parquet"
    assert uri == f"s3://{exports.bucket}/{key1}"
    assert _read(s3, exports.bucket, key1).column("customerId").to_pylist() == ["c1", "c2"]

    exports.write_partition(PROGRAM, "2026-11-21", candidates(["c9"], score=0.9))
    assert _keys(s3, exports.bucket) == [key1, f"engage/exports/{PROGRAM}/partition_key=2026-11-22/candidates.parquet"]
    rewritten = _read(s3, exports.bucket, key1)
    assert rewritten.column("customerId").to_pylist() == ["c9"] and rewritten.column("score").to_pylist() == [0.9]
    # timestamps written as microseconds (Hive/Athena cannot read nanoseconds)
    assert rewritten.schema.field("createdAt").type == pa.timestamp("us", tz="UTC")


def test_s3_register_creates_glue_table_and_partitions(s3_exports):
    exports, _, glue = s3_exports
    exports.write_partition(PROGRAM, "2026-11-21", candidates(["c1", "c2"]))
    exports.write_partition(PROGRAM, "2026-11-22", candidates(["c3"]))
    assert exports.register(PROGRAM) == f"{exports.glue_database}.churn_prevention"

    table = glue.get_table(DatabaseName=exports.glue_database, Name="churn_prevention")["Table"]
    sd = table["StorageDescriptor"]
    assert sd["Columns"] == [
        {"Name": "customerid", "Type": "string"},
        {"Name": "score", "Type": "double"},
        {"Name": "scores", "Type": "map<string,double>"},
        {"Name": "channels", "Type": "array<string>"},
        {"Name": "createdat", "Type": "timestamp"},
    ]
    assert table["PartitionKeys"] == [{"Name": "partition_key", "Type": "string"}]
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert sd["InputFormat"].endswith("MapredParquetInputFormat")
    assert sd["Location"] == f"s3://{exports.bucket}/engage/exports/{PROGRAM}/"

    partitions = glue.get_partitions(DatabaseName=exports.glue_database, TableName="churn_prevention")["Partitions"]
    assert {p["Values"][0]: p["StorageDescriptor"]["Location"] for p in partitions} == {
        "2026-11-21": f"s3://{exports.bucket}/engage/exports/{PROGRAM}/partition_key=2026-11-21/",
        "2026-11-22": f"s3://{exports.bucket}/engage/exports/{PROGRAM}/partition_key=2026-11-22/",
    }


def test_s3_register_again_is_idempotent_and_follows_new_columns(s3_exports):
    exports, _, glue = s3_exports
    exports.write_partition(PROGRAM, "2026-11-21", candidates(["c1"]))
    exports.register(PROGRAM)
    exports.write_partition(PROGRAM, "2026-11-21", candidates(["c2"]))  # rewritten partition
    exports.register(PROGRAM)  # nothing new: no error, no duplicate
    time.sleep(1.1)  # S3 LastModified has one-second resolution; the newest partition sets the columns
    exports.write_partition(PROGRAM, "2026-11-23", candidates(["c3"], segment=pa.array(["high"])))
    exports.register(PROGRAM)

    partitions = glue.get_partitions(DatabaseName=exports.glue_database, TableName="churn_prevention")["Partitions"]
    assert sorted(p["Values"][0] for p in partitions) == ["2026-11-21", "2026-11-23"]
    columns = glue.get_table(DatabaseName=exports.glue_database, Name="churn_prevention")["Table"]["StorageDescriptor"][
        "Columns"
    ]
    assert columns[-1] == {"Name": "segment", "Type": "string"}


def test_s3_register_without_exports_fails_clearly(s3_exports):
    exports, _, _ = s3_exports
    with pytest.raises(FileNotFoundError, match="no exported partitions"):
        exports.register("win-back-campaigns")


def test_hive_types_for_the_candidate_schema():
    assert hive_type(pa.int32()) == "int" and hive_type(pa.int64()) == "bigint" and hive_type(pa.bool_()) == "boolean"
    assert hive_type(pa.date32()) == "date" and hive_type(pa.decimal128(10, 2)) == "decimal(10,2)"
    assert hive_type(pa.dictionary(pa.int8(), pa.string())) == "string"
    assert hive_type(pa.struct([("Offer", pa.string()), ("pct", pa.float32())])) == "struct<offer:string,pct:float>"
    with pytest.raises(ValueError):
        hive_type(pa.time64("us"))
    with pytest.raises(ValueError, match="clash"):
        glue_columns(pa.schema([("customerId", pa.string()), ("customerid", pa.string())]))


def test_s3_schema_read_from_a_large_footer(s3_exports):
    """A file whose footer is bigger than the first 64 KiB range read (thousands of row groups)."""
    from resources.exports.s3 import parquet_schema_from_s3

    exports, s3, _ = s3_exports
    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": list(range(20000)), "b": ["x"] * 20000}), buffer, row_group_size=10)
    assert int.from_bytes(buffer.getvalue()[-8:-4], "little") > 65536
    s3.put_object(Bucket=exports.bucket, Key="big.parquet", Body=buffer.getvalue())
    assert parquet_schema_from_s3(s3, exports.bucket, "big.parquet") == pa.schema(
        [("a", pa.int64()), ("b", pa.string())]
    )


# ---------------------------------------------------------------------------------------------- GDPR erasure


def _erasure_case(exports) -> None:
    """Three partitions; erasing c1 and c4 rewrites only the two that hold them and keeps every other row."""
    exports.write_partition(
        PROGRAM, "2026-11-20", candidates(["c1", "c2"]).append_column("customer_id", pa.array(["c1", "c2"]))
    )
    exports.write_partition(PROGRAM, "2026-11-21", candidates(["c3"]).append_column("customer_id", pa.array(["c3"])))
    exports.write_partition(
        PROGRAM, "2026-11-22", candidates(["c4", "c1", "c5"]).append_column("customer_id", pa.array(["c4", "c1", "c5"]))
    )
    assert exports.partition_keys(PROGRAM) == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert exports.erase_customers(PROGRAM, {"c1", "c4", "c9"}) == {"2026-11-20": 1, "2026-11-22": 2}
    remaining = {
        k: exports.read_partition(PROGRAM, k, ["customer_id"]).column("customer_id").to_pylist()
        for k in exports.partition_keys(PROGRAM)
    }
    assert remaining == {"2026-11-20": ["c2"], "2026-11-21": ["c3"], "2026-11-22": ["c5"]}
    assert exports.read_partition(PROGRAM, "2026-11-22").column("score").to_pylist() == [0.5]  # whole rows kept
    assert exports.erase_customers(PROGRAM, {"c1", "c4"}) == {}  # idempotent: nothing left to remove
    assert exports.erase_customers(PROGRAM, []) == {}


def test_local_erase_customers_rewrites_only_partitions_that_hold_them(local):
    exports, warehouse = local
    _erasure_case(exports)
    exports.register(PROGRAM)
    ids = {r["customer_id"] for r in _query(warehouse, "SELECT customer_id FROM exports.churn_prevention")}
    assert ids == {"c2", "c3", "c5"}
    assert not list(Path(exports.root).rglob("*.tmp"))


def test_s3_erase_customers_rewrites_only_partitions_that_hold_them(s3_exports):
    exports, s3, _ = s3_exports
    _erasure_case(exports)
    assert len(_keys(s3, exports.bucket)) == 3
