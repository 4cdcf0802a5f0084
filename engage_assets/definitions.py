"""Engage's Dagster definitions: the dbt warehouse, one asset family per program YAML, jobs and schedules.

A batch program (`dataConnectors`) gets the date-partitioned family of `engage_assets.assets.program`; a reactive one
(`eventSources`) the hourly family of `engage_assets.assets.reactive` and a cart-event sensor.

Built lazily (`@dg.definitions`): the environment (ENGAGE_ENV, ENGAGE_HOME) is read when Dagster loads the
code location, not at import.
"""

from __future__ import annotations

import gc
import os
from functools import cache

import dagster as dg

from engage_assets.assets.dbt import build_dbt_assets, raw_source_specs
from engage_assets.assets.delivery import build_all_delivery
from engage_assets.assets.gdpr import build_gdpr_erasure
from engage_assets.assets.outcomes_export import OUTCOMES_EXPORT_SCHEDULE, outcomes_export
from engage_assets.assets.program import build_program
from engage_assets.assets.reactive import build_reactive_program, decide_job_name
from engage_assets.assets.reports import build_reports
from engage_assets.domain.config import ProgramBase, ProgramConfig, ReactiveProgram, load_programs
from engage_assets.settings import get_settings, program_config_dir
from resources.by_env import build_resources
from sensors.cart_events import build_cart_event_sensor
from sensors.due_touches import build_due_touch_sensor, deliver_job_name
from sensors.run_failures import engage_run_failure_alerts

WAREHOUSE_JOB = "warehouse_build"
RETRAIN_JOB = "model_retraining"


def build_definitions() -> dg.Definitions:
    settings = get_settings()
    engage_dbt_assets = build_dbt_assets()
    everyone: list[ProgramBase] = list(load_programs(program_config_dir()))
    programs = [p for p in everyone if isinstance(p, ProgramConfig)]
    reactive = [p for p in everyone if isinstance(p, ReactiveProgram)]
    built = [build_program(p) for p in programs] + [build_reactive_program(p, everyone) for p in reactive]
    delivery = build_all_delivery(programs, everyone)
    gdpr_job, gdpr_schedule = build_gdpr_erasure(programs)
    reports = build_reports(everyone, engage_dbt_assets.keys)
    model_keys = [k for b in built for k in b.model_keys]
    warehouse_job = dg.define_asset_job(
        WAREHOUSE_JOB,
        selection=dg.AssetSelection.assets(engage_dbt_assets),
        description="dbt build: staging → intermediate → marts, with dbt tests as asset checks.",
    )
    retrain_job = dg.define_asset_job(
        RETRAIN_JOB,
        selection=dg.AssetSelection.assets(*model_keys),
        description="Retrain every program's models at once (on demand: each model's own schedule retrains it on "
        "its cadence); each is promoted only if it beats a naive one-feature baseline and the current version.",
    )
    return dg.Definitions(
        assets=[
            *raw_source_specs(),
            engage_dbt_assets,
            *(a for b in built for a in b.assets),
            *delivery[0],
            *reports.assets,
            outcomes_export,
        ],
        asset_checks=[c for b in built for c in b.asset_checks],
        jobs=[
            warehouse_job,
            retrain_job,
            *(j for b in built for j in b.jobs),
            *delivery[1],
            gdpr_job,
            *reports.jobs,
        ],
        schedules=[
            # The warehouse refreshes before the 2 AM batch programs read it.
            dg.ScheduleDefinition(
                name="warehouse_build_schedule",
                job=warehouse_job,
                cron_schedule="30 1 * * *",
                default_status=dg.DefaultScheduleStatus.RUNNING,
            ),
            *(s for b in built for s in b.schedules),
            gdpr_schedule,
            OUTCOMES_EXPORT_SCHEDULE,  # and its job
            *reports.schedules,
        ],
        sensors=[
            engage_run_failure_alerts,
            *(build_due_touch_sensor(p, deliver_job_name(p)) for p in everyone),
            *(build_cart_event_sensor(p, decide_job_name(p)) for p in reactive),
        ],
        resources=build_resources(settings),
    )


def load_definitions() -> dg.Definitions:
    """The code location's definitions, built once per process and environment.

    Dagster calls the lazy `defs` several times in one run worker (execution plan, each step's job, the
    resources): building them costs 1-4 s each (the dbt manifest, every program's assets), which a run or a
    sensor-launched run would pay again and again.  The settings come from the environment, so it is the key.
    """
    return _built_for(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("ENGAGE_", "DBT_")))))


@cache
def _built_for(environment: tuple[tuple[str, str], ...]) -> dg.Definitions:
    built = build_definitions()
    # Everything built so far lives as long as the process.  Frozen, it is left out of every later garbage
    # collection: a full one otherwise re-scans its ~400,000 objects (0.23 s), in every stage's memory release and
    # in the automatic collections a large partition triggers.
    gc.freeze()
    return built


@dg.definitions
def defs() -> dg.Definitions:
    return load_definitions()
