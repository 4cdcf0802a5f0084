"""The one place that reads the environment: where local state lives and which resources to use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    env: str  # "local" (embedded default) or "prod"
    home: Path  # local state: warehouse, store, exports, models

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def store_path(self) -> Path:
        return self.home / "store.sqlite"

    @property
    def engagement_path(self) -> Path:
        return self.home / "engagement.sqlite"

    @property
    def ledger_path(self) -> Path:
        return self.home / "delivery.sqlite"

    @property
    def refund_ledger_path(self) -> Path:
        return self.home / "refunds.sqlite"

    @property
    def export_root(self) -> Path:
        return self.home / "exports"

    @property
    def model_root(self) -> Path:
        return self.home / "models"

    @property
    def stage_root(self) -> Path:
        return self.home / "stages"


def get_settings() -> Settings:
    env = os.environ.get("ENGAGE_ENV", "local")
    if env not in ("local", "prod"):
        raise ValueError(f"ENGAGE_ENV must be 'local' or 'prod', got {env!r}")
    home = Path(os.environ.get("ENGAGE_HOME", PROJECT_ROOT / "data")).resolve()
    return Settings(env=env, home=home)


def program_config_dir() -> Path:
    return Path(os.environ.get("ENGAGE_PROGRAM_CONFIGS", PROJECT_ROOT / "program_configs"))
