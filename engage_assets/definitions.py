"""Engage's Dagster definitions: the dbt warehouse, one asset family per program YAML, jobs and schedules.

A batch program (`dataConnectors`) gets the date-partitioned family of `engage_assets.assets.program`; a reactive one
(`eventSources`) the hourly family of `engage_assets.assets.reactive` and a cart-event sensor.

Two code locations (workspace.yaml): this module's `defs` is the main one (`engage`): everything but the reactive
programs' event path, which is `engage_assets.reactive_location` (`engage_events`: the decision stages, their decide
jobs and cart-event sensors, in a process that starts in about a second).  `build_definitions()` is their union, the
whole deployment in one `Definitions`, for `engage run`, the tests and the benches, which build it in process.

Built lazily (`@dg.definitions`): the environment (ENGAGE_ENV, ENGAGE_HOME) is read when Dagster loads the
code location, not at import.
"""

from __future__ import annotations

import dagster as dg

from engage_assets.assets.dbt import build_dbt_assets, raw_source_specs
from engage_assets.assets.delivery import build_all_delivery
from engage_assets.assets.gdpr import build_gdpr_erasure
from engage_assets.assets.outcomes_export import OUTCOMES_EXPORT_SCHEDULE, outcomes_export
from engage_assets.assets.program import build_program
from engage_assets.assets.reactive.family import build_reactive_program
from engage_assets.assets.reports import build_reports
from engage_assets.domain.config import ProgramBase, ProgramConfig, ReactiveProgram
from engage_assets.reactive_location import build_event_path, deployment_programs, load_once
from engage_assets.settings import get_settings
from resources.by_env import build_resources
from sensors.due_touches import build_due_touch_sensor, deliver_job_name
from sensors.run_failures import engage_run_failure_alerts

WAREHOUSE_JOB = "warehouse_build"
RETRAIN_JOB = "model_retraining"


def build_definitions() -> dg.Definitions:
    """The whole deployment: the main location's definitions and the event path's (`reactive_location`), with every
    resource of the environment."""
    everyone = deployment_programs()
    return dg.Definitions.merge(build_main_definitions(everyone), build_event_path(everyone).definitions())


def build_main_definitions(everyone: list[ProgramBase] | None = None) -> dg.Definitions:  # long: one wiring list
    """The main code location's definitions: everything but the event path (`engage_assets.reactive_location`)."""
    settings = get_settings()
    engage_dbt_assets = build_dbt_assets()
    everyone = deployment_programs() if everyone is None else everyone
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
        ],
        resources=build_resources(settings),
    )


def load_definitions() -> dg.Definitions:
    """The main code location's definitions, built once per process and environment (`load_once`)."""
    return load_once(build_main_definitions)


@dg.definitions
def defs() -> dg.Definitions:
    return load_definitions()
