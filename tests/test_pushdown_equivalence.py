"""The push-down (issue #14) gives the funnels the Arrow path gave: for each batch program on a generated test
warehouse, the same valid source rows, the same rejected rows with the same filter and reason, the same eligible
rows and the same counts per filter — with GDPR-erased customers, NaN and NULL values, unknown customers and a
marketplace restriction in play.  The Arrow path is `tests/arrow_oracle.py` (the code the stages ran before)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engage_assets.assets.program import source as source_module
from engage_assets.assets.program.eligible import eligible_partition
from engage_assets.assets.program.partitions import partitions_for
from engage_assets.assets.program.source import source_partition
from engage_assets.demo.datagen import generate
from engage_assets.domain.config import ProgramConfig, load_programs
from engage_assets.domain.source_columns import HISTORY_COLUMNS
from engage_assets.domain.sources import PartitionWindow
from engage_assets.settings import program_config_dir
from resources.warehouse.duckdb import DuckDBWarehouse
from tests.arrow_oracle import arrow_eligible, arrow_source

ROOT = Path(__file__).resolve().parents[1]
END = date(2026, 11, 22)
PARTITIONS = {"proactive_refunds": "2026-11-21", "churn_prevention": "2026-11-09", "win_back": "2026-10-05"}
REJECTION_KEYS = ("customer_id", "subject_id", "stage", "filter_id", "reason")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """A scale-0.02 generated warehouse built by `dbt run`, then spoiled the ways real sources are: NaN and NULL in
    columns the filters read and in columns they do not, a source row whose customer is unknown."""
    home = tmp_path_factory.mktemp("pushdown")
    path = home / "warehouse.duckdb"
    generate(path, scale=0.02, seed=11, end_date=END)
    env = {**os.environ, "ENGAGE_WAREHOUSE_PATH": str(path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    dbt = Path(sys.executable).parent / "dbt"
    args = ["--project-dir", str(ROOT / "dbt_project"), "--profiles-dir", str(ROOT / "dbt_project")]
    proc = subprocess.run(
        [
            str(dbt),
            "run",
            "--quiet",
            *args,
            "--select",
            "+path:models/marts",
            "--target",
            "local",
            "--target-path",
            str(home / "target"),
        ],
        cwd=ROOT / "dbt_project",
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with duckdb.connect(str(path)) as con:
        for spoil in (
            "SET lifetime_value_usd = 'NaN'::DOUBLE WHERE customer_id LIKE '%3'",
            "SET marketplace = NULL WHERE customer_id LIKE '%17'",
            "SET account_status = NULL WHERE customer_id LIKE '%21'",
        ):
            try:
                con.execute(f"UPDATE marts.customers {spoil}")
            except duckdb.ConstraintException:  # the mart's contract forbids it: that value cannot be missing
                pass
        con.execute("DELETE FROM marts.customers WHERE customer_id LIKE '%99'")  # unknown customers at the source
        for table, column in (
            ("order_tracking", "delay_days"),
            ("order_tracking", "order_value_usd"),
            ("customer_analytics", "engagement_change"),
            ("churned_customers", "days_since_churn"),
        ):
            kind = con.execute(
                f"SELECT data_type FROM information_schema.columns WHERE table_name = '{table}' "
                f"AND column_name = '{column}'"
            ).fetchone()
            if kind is None:
                continue
            bad = "'NaN'::DOUBLE" if kind[0] == "DOUBLE" else "NULL"
            for value, ending in ((bad, "5"), ("NULL", "7")):
                try:
                    con.execute(f"UPDATE marts.{table} SET {column} = {value} WHERE customer_id LIKE '%{ending}'")
                except duckdb.ConstraintException:
                    pass
    return path


def _programs() -> dict[str, ProgramConfig]:
    return {p.group: p for p in load_programs(program_config_dir()) if isinstance(p, ProgramConfig)}


def _window(program: ProgramConfig) -> PartitionWindow:
    key = PARTITIONS[program.group]
    tw = partitions_for(program).time_window_for_partition_key(key)
    return PartitionWindow(key, tw.start.date(), tw.end.date())


def _rows(table: pa.Table, keys: tuple[str, ...]) -> list[tuple]:
    """Rows as sorted tuples; NaN never appears (both paths turn it into NULL), so equality is exact."""

    def cell(v: object) -> object:
        assert not (isinstance(v, float) and math.isnan(v)), "a NaN reached the candidates"
        return v

    return sorted((tuple(cell(r[k]) for k in keys) for r in table.to_pylist()), key=repr)


def _check_same(program: ProgramConfig, path: Path, stage_root: Path, erased: set[str]) -> dict[str, int]:
    warehouse = DuckDBWarehouse(path=str(path))
    window = _window(program)
    valid, rejected, figures = arrow_source(program, warehouse, erased, window)
    rows_at, meta = source_partition(program, warehouse, str(stage_root), erased, window)
    pushed = pq.read_table(rows_at)
    # source_candidates holds the validated rows with their context; the look-backs join at the chain.
    columns = [c for c in valid.column_names if c not in HISTORY_COLUMNS]
    assert pushed.column_names == columns
    assert pushed.schema.types == valid.select(columns).schema.types
    assert _rows(pushed, tuple(columns)) == _rows(valid, tuple(columns))
    assert _rows(pq.read_table(meta["rejections_path"]), REJECTION_KEYS) == _rows(rejected, REJECTION_KEYS)
    for k in ("dagster/row_count", "rows_read", "excluded_erased", "rejected_invalid", "outside_marketplaces"):
        assert meta[k] == figures[k], k

    eligible, chain_rejected, removed = arrow_eligible(program, valid)
    got, emeta = eligible_partition(program, warehouse, str(stage_root), window)
    assert got.column_names == eligible.column_names
    assert got.schema.types == eligible.schema.types
    assert _rows(got, tuple(got.column_names)) == _rows(eligible, tuple(got.column_names))
    assert {k.removeprefix("removed/"): v for k, v in emeta.items() if k.startswith("removed/")} == removed
    assert _rows(pq.read_table(emeta["rejections_path"]), REJECTION_KEYS) == _rows(chain_rejected, REJECTION_KEYS)
    return {
        "rows_read": figures["rows_read"],
        "invalid": figures["rejected_invalid"],
        "eligible": got.num_rows,
        "customer_join": meta["customer_join"],
    }


@pytest.mark.parametrize(
    ("buckets", "sample"), [(1, 4096), (5, 4096), (5, 0)], ids=["one-statement", "five-ranges", "five-hashes"]
)
@pytest.mark.parametrize("group", sorted(PARTITIONS))
def test_the_pushed_down_stages_give_the_arrow_paths_funnel(group, buckets, sample, warehouse, tmp_path, monkeypatch):
    """Also with the source statement joined bucket by bucket, as a large source is (a folder of files): in ranges
    of customer ids cut at a sample, or in hash buckets (no sample)."""
    monkeypatch.setattr(DuckDBWarehouse, "source_buckets", lambda self, rows: buckets)
    monkeypatch.setattr(source_module, "ID_SAMPLE_ROWS", sample)
    program = _programs()[group]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        table = program.connector.config.table.split(".")[-1]
        erased = {r[0] for r in con.execute(f"SELECT customer_id FROM marts.{table} LIMIT 7").fetchall()}
    seen = _check_same(program, warehouse, tmp_path, erased)
    split = {1: "one statement", 5: f"5 {'ranges' if sample else 'hash buckets'} of customer_id"}[buckets]
    assert seen["customer_join"] == split
    # The test says something: rows were read, some rejected at the source, some eligible, none for every reason.
    assert seen["rows_read"] > 100 and seen["invalid"] > 0 and 0 < seen["eligible"] < seen["rows_read"]


def test_a_marketplace_restriction_and_no_erasures_give_the_same_funnel(warehouse, tmp_path):
    program = _programs()["churn_prevention"]
    program = program.model_copy(update={"marketplaces": ["US", "DE"]})
    _check_same(program, warehouse, tmp_path, set())


def test_a_rerun_replaces_the_partitions_files(warehouse, tmp_path):
    program = _programs()["proactive_refunds"]
    window = _window(program)
    wh = DuckDBWarehouse(path=str(warehouse))
    first, meta = source_partition(program, wh, str(tmp_path), set(), window)
    n = pq.read_metadata(first).num_rows
    everyone = set(pq.read_table(first).column("customer_id").to_pylist())
    again, meta2 = source_partition(program, wh, str(tmp_path), everyone, window)
    assert again == first and pq.read_metadata(again).num_rows == 0 < n
    assert meta2["excluded_erased"] >= n
    assert not set(pq.read_table(meta2["rejections_path"]).column("customer_id").to_pylist()) & everyone
    assert [p.name for p in Path(first).parent.iterdir()] == [Path(first).name]  # no temporary file left


def test_a_rerun_may_switch_between_one_file_and_buckets(warehouse, tmp_path, monkeypatch):
    """The number of buckets follows the source's size, so a re-run may write a folder where a file was, or the
    reverse: either replaces the previous run's rows, and nothing temporary is left."""
    program = _programs()["churn_prevention"]
    window = _window(program)
    wh = DuckDBWarehouse(path=str(warehouse))
    rows = []
    for buckets in (1, 4, 1):
        monkeypatch.setattr(DuckDBWarehouse, "source_buckets", lambda self, rows, n=buckets: n)
        at, meta = source_partition(program, wh, str(tmp_path), set(), window)
        assert Path(at).is_dir() == (buckets > 1) and meta["customer_join"].startswith(
            str(buckets) if buckets > 1 else "one"
        )
        assert [p.name for p in Path(at).parent.iterdir()] == [Path(at).name]
        # The rejections are one file whatever the buckets (dbt reads one file per partition), no part left.
        rejections = Path(meta["rejections_path"])
        assert rejections.is_file() and [p.name for p in rejections.parent.iterdir()] == [rejections.name]
        if buckets > 1:
            assert len(list(Path(at).glob("*.parquet"))) == buckets
        rows.append(sorted(pq.read_table(at).column("customer_id").to_pylist()))
    assert rows[0] == rows[1] == rows[2] and rows[0]


def test_hash_buckets_are_capped_ranges_are_not(warehouse, tmp_path, monkeypatch):
    """Each hash bucket's statement scans both tables whole: at most MAX_HASH_BUCKETS of them; ranges read only their
    own row groups and follow the memory limit however many they are."""
    from engage_assets.domain.join_buckets import MAX_HASH_BUCKETS

    program = _programs()["churn_prevention"]
    wh = DuckDBWarehouse(path=str(warehouse))
    monkeypatch.setattr(DuckDBWarehouse, "source_buckets", lambda self, rows: MAX_HASH_BUCKETS + 4)
    monkeypatch.setattr(source_module, "ID_SAMPLE_ROWS", 0)
    _, meta = source_partition(program, wh, str(tmp_path), set(), _window(program))
    assert meta["customer_join"] == f"{MAX_HASH_BUCKETS} hash buckets of customer_id"
    monkeypatch.setattr(source_module, "ID_SAMPLE_ROWS", 4096)
    _, meta = source_partition(program, wh, str(tmp_path), set(), _window(program))
    assert meta["customer_join"] == f"{MAX_HASH_BUCKETS + 4} ranges of customer_id"
    # A sample without an id cuts no range: hash buckets then, capped as above (it had said "1 ranges", uncapped).
    monkeypatch.setattr(source_module, "range_bounds", lambda sample, buckets: [])
    _, meta = source_partition(program, wh, str(tmp_path), set(), _window(program))
    assert meta["customer_join"] == f"{MAX_HASH_BUCKETS} hash buckets of customer_id"


def test_a_killed_writes_leftovers_are_swept_by_the_next_write_a_fresh_one_is_not(warehouse, tmp_path):
    """A run killed mid-write leaves `.<pk>.parquet.<hex>.tmp` / `.parts` / `.old` beside the stage; the next write of
    that stage removes those older than LEFTOVER_AGE_S and leaves a younger one (it may be a concurrent write's)."""
    from resources.warehouse import duckdb as duckdb_module

    program = _programs()["proactive_refunds"]
    wh = DuckDBWarehouse(path=str(warehouse))
    first, meta = source_partition(program, wh, str(tmp_path), set(), _window(program))
    rejections = Path(meta["rejections_path"])
    old_parts = rejections.with_name(f".{rejections.name}.dead.parts")
    old_parts.mkdir()
    (old_parts / "bucket-0000.parquet").write_bytes(b"x")
    old_tmp = Path(first).with_name(f".{Path(first).name}.dead.tmp")
    young_tmp = Path(first).with_name(f".{Path(first).name}.live.tmp")
    for p in (old_tmp, young_tmp):
        p.write_bytes(b"x")
    stale = os.stat(old_tmp).st_mtime - duckdb_module.LEFTOVER_AGE_S - 60
    for p in (old_parts, old_tmp):
        os.utime(p, (stale, stale))
    source_partition(program, wh, str(tmp_path), set(), _window(program))
    assert not old_parts.exists() and not old_tmp.exists() and young_tmp.exists()
