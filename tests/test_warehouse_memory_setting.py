"""The embedded warehouse's memory limit comes from one setting (ENGAGE_WAREHOUSE_MEMORY_LIMIT), checked at load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engage_assets.settings import Settings
from resources.by_env import local_resources


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
