"""The embedded warehouse's memory limit comes from one setting (ENGAGE_WAREHOUSE_MEMORY_LIMIT), checked at load, and
decides in how many buckets a large source is joined with the customers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engage_assets.settings import Settings
from resources.by_env import local_resources
from resources.warehouse.duckdb import DuckDBWarehouse, byte_count


def test_the_batch_warehouse_gets_the_configured_memory_limit(monkeypatch, tmp_path):
    monkeypatch.setenv("ENGAGE_WAREHOUSE_MEMORY_LIMIT", "2GB")
    assert local_resources(Settings(home=tmp_path))["warehouse"].memory_limit == "2GB"
    monkeypatch.delenv("ENGAGE_WAREHOUSE_MEMORY_LIMIT")
    assert local_resources(Settings(home=tmp_path))["warehouse"].memory_limit == "400MB"  # the bounded default


@pytest.mark.parametrize("bad", ["lots", "2 gigabytes", "-1GB", ""])
def test_a_bad_memory_limit_fails_at_load(monkeypatch, bad):
    monkeypatch.setenv("ENGAGE_WAREHOUSE_MEMORY_LIMIT", bad)
    with pytest.raises(ValidationError, match="warehouse_memory_limit"):
        Settings()


@pytest.mark.parametrize(
    ("limit", "rows", "buckets"),
    [
        ("400MB", 500_000, 1),  # the spec's partition: one statement
        ("400MB", 1_250_000, 1),
        ("400MB", 1_250_001, 2),
        ("400MB", 10_000_000, 8),  # the 10M bench: eight joins of 1.25M rows each
        ("2GB", 10_000_000, 2),  # more memory, fewer buckets
        ("1.5 GiB", 10_000_000, 2),
        (None, 10_000_000, 1),  # no limit: DuckDB's own, one statement
        ("400MB", 0, 1),
        ("400MB", 50_000_000, 40),  # ranges are not capped (hash buckets are: MAX_HASH_BUCKETS)
    ],
)
def test_a_source_is_joined_in_buckets_that_fit_the_memory_limit(tmp_path, limit, rows, buckets):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), memory_limit=limit)
    assert warehouse.source_buckets(rows) == buckets


@pytest.mark.parametrize("size", ["400", "MB", "4OO MB", "400 PB", ""])
def test_a_size_without_a_known_unit_is_refused(size):
    with pytest.raises(ValueError, match="not a size"):
        byte_count(size)
