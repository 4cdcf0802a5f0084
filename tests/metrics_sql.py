"""The metric models' compiled SQL (dbt_project/models/metrics), run in DuckDB over hand-made or simulated tables: one
`dbt compile` per session instead of a dbt build per case.  The compiled SQL names its inputs as
`"<catalog>"."<schema>"."<name>"`; `MetricsWarehouse` creates those relations in a DuckDB file whose catalog is the
one the SQL was compiled against, loads the seeds from their CSV files, and builds the models in dependency order."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from resources.dbt import dbt_project

PROJECT_DIR = Path(dbt_project.project_dir)
CATALOG = "metricsim"
# In dependency order (a model reads only those before it).
MODELS = (
    "touch_events",
    "touch_attribution",
    "offer_conversions",
    "holdout_lift",
    "program_funnel",
    "program_metrics",
    "program_daily_metrics",
)
SEEDS = ("spec_metric_figures", "metric_segments", "channel_unit_costs", "program_conversion_types")
INPUTS = {
    "staging.stg_platform_assignments": (
        "offer_id VARCHAR, customer_id VARCHAR, program_id VARCHAR, partition_key VARCHAR, subject_id VARCHAR, "
        "segment VARCHAR, offer_type VARCHAR, holdout BOOLEAN, amount_usd DOUBLE, assigned_date DATE, "
        "loaded_at TIMESTAMP"
    ),
    "staging.stg_platform_outcomes": (
        "event_id VARCHAR, touch_ref VARCHAR, program_id VARCHAR, customer_id VARCHAR, channel VARCHAR, "
        "event_type VARCHAR, occurred_at TIMESTAMP, provider_id VARCHAR, simulated BOOLEAN, loaded_at TIMESTAMP"
    ),
    "staging.stg_conversions": (
        "conversion_id VARCHAR, customer_id VARCHAR, conversion_type VARCHAR, occurred_at TIMESTAMP, "
        "value_usd DOUBLE, order_id VARCHAR, offer_code VARCHAR, program_id VARCHAR, simulated BOOLEAN, "
        "loaded_at TIMESTAMP"
    ),
    "marts.contact_history": (
        "touch_ref VARCHAR, offer_id VARCHAR, customer_id VARCHAR, program_id VARCHAR, partition_key VARCHAR, "
        "subject_id VARCHAR, touch_id VARCHAR, channel VARCHAR, channel_id VARCHAR, template_id VARCHAR, "
        "segment VARCHAR, offer_type VARCHAR, amount_usd DOUBLE, provider_id VARCHAR, sent_at TIMESTAMP, "
        "contact_date DATE, loaded_at TIMESTAMP"
    ),
    "marts.customers": "customer_id VARCHAR, lifetime_value_usd DOUBLE",
}


@cache
def compiled_models(workdir: str, dbt_vars: str | None = None) -> dict[str, str]:
    """{model: its compiled SELECT}, from one `dbt compile` of the metric models into `workdir` (the catalog is
    CATALOG: the warehouse file dbt is pointed at is `<workdir>/<CATALOG>.duckdb`), with `dbt_vars` (YAML) if given."""
    root = Path(workdir)
    target = root / "dbt_target"
    env = {
        **os.environ,
        "ENGAGE_WAREHOUSE_PATH": str(root / f"{CATALOG}.duckdb"),
        "ENGAGE_HOME": str(root / "home"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    dbt = Path(sys.executable).parent / "dbt"
    args = [str(dbt), "compile", "--quiet", "--select", *MODELS, "--target-path", str(target)]
    args += ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    args += ["--vars", dbt_vars] if dbt_vars else []
    done = subprocess.run(args, cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dbt compile failed:\n{done.stdout}{done.stderr}")
    folder = target / "compiled" / "engage" / "models" / "metrics"
    return {name: (folder / f"{name}.sql").read_text() for name in MODELS}


class MetricsWarehouse:
    """A DuckDB file (catalog CATALOG) holding the metric models' inputs; `build()` runs the compiled models."""

    def __init__(self, folder: Path, models: Mapping[str, str]):
        folder.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(folder / f"{CATALOG}.duckdb"))
        self.models = models
        for schema in ("staging", "marts", "metrics"):
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for name, columns in INPUTS.items():
            self.con.execute(f"CREATE OR REPLACE TABLE {name} ({columns})")
        seeds = PROJECT_DIR / "seeds"
        for seed in SEEDS:
            self.con.execute(
                f"CREATE OR REPLACE TABLE metrics.{seed} AS SELECT * FROM read_csv(?, header = true, all_varchar = true)",
                [str(seeds / f"{seed}.csv")],
            )
        self.con.execute(
            "CREATE OR REPLACE TABLE metrics.spec_metric_figures AS SELECT * REPLACE "
            "(CAST(spec_figure AS DOUBLE) AS spec_figure) FROM metrics.spec_metric_figures"
        )
        self.con.execute(
            "CREATE OR REPLACE TABLE metrics.channel_unit_costs AS SELECT * REPLACE "
            "(CAST(unit_cost_usd AS DOUBLE) AS unit_cost_usd) FROM metrics.channel_unit_costs"
        )

    def load(self, name: str, rows: pa.Table | Sequence[Mapping[str, Any]]) -> None:
        """Replace the rows of input `name` (e.g. "staging.stg_conversions") with `rows`, by column name."""
        self.con.execute(f"DELETE FROM {name}")
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
        if table.num_rows:
            self.con.register("incoming", table)
            self.con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming")
            self.con.unregister("incoming")

    def build(self, only: Sequence[str] = MODELS) -> None:
        """Create the metric tables (in MODELS' order; `only` limits them to the ones a test needs)."""
        for name in MODELS:
            if name in only:
                self.con.execute(f"CREATE OR REPLACE TABLE metrics.{name} AS {self.models[name]}")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query."""
        return self.con.execute(sql, list(params)).fetchall()

    def close(self) -> None:
        self.con.close()
