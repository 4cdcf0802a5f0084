"""The event path's code location (`engage_events` in workspace.yaml): for each reactive program, the decision stages
(`engage_assets.assets.reactive.decisions`), their `<group>_decide` job and the cart-event sensor that launches it.

Why a location of its own: every decision run is a new process that imports its code location before it decides
anything (the sensor bench's `launch` phase).  The main location (`engage_assets.definitions`) imports dagster-dbt
and the dbt manifest, sklearn for training and evaluation, boto3 and every program's family: ~3.5 s of imports on a
quiet machine.  This one imports Dagster, the decision path and the event path's resources (`resources.event_path`;
production classes only in production), and scores from the model's `linear.json` (no sklearn).  A test holds it to
that (`tests/test_reactive_location.py`).

What lives here and nowhere else: the asset keys `[group, <stage>]` of the decision stages.  The main location keeps
the rest of the program (its model, deliveries, expiry, weekly jobs, the due-touch sensor); lineage crosses the two
by asset key (`scored_candidates` → the model, `deliveries` → `touch_plan`, `source_candidates` → the marts).
`build_event_path` is the one place the event path is wired: this location's `defs`, and
`engage_assets.definitions.build_definitions` (the union of both locations that `engage run`, tests and benches
build in process), take it from here.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import dagster as dg

from engage_assets.assets.reactive import cart_decisions_asset, decide_job, decide_job_name
from engage_assets.domain.config import ProgramBase, ReactiveProgram, load_programs
from engage_assets.settings import get_settings, program_config_dir
from resources.event_path import event_path_resources
from sensors.cart_events import build_cart_event_sensor

LOCATION_NAME = "engage_events"


@dataclass(frozen=True)
class EventPath:
    """The event path's definitions, without resources (each location gives its own)."""

    assets: list[dg.AssetsDefinition] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)
    sensors: list[dg.SensorDefinition] = field(default_factory=list)

    def definitions(self, resources: dict[str, Any] | None = None) -> dg.Definitions:
        return dg.Definitions(assets=self.assets, jobs=self.jobs, sensors=self.sensors, resources=resources)


def deployment_programs() -> list[ProgramBase]:
    """Every program of the deployment (the program YAMLs under the config directory)."""
    return list(load_programs(program_config_dir()))


def build_event_path(programs: Sequence[ProgramBase]) -> EventPath:
    """Each reactive program's decision stages, its decide job and its cart-event sensor."""
    path = EventPath()
    for program in (p for p in programs if isinstance(p, ReactiveProgram)):
        decisions = cart_decisions_asset(program)
        path.assets.append(decisions)
        path.jobs.append(decide_job(program, decisions))
        path.sensors.append(build_cart_event_sensor(program, decide_job_name(program)))
    return path


def build_event_definitions() -> dg.Definitions:
    """This location's definitions: the event path with its resources for the environment."""
    return build_event_path(deployment_programs()).definitions(event_path_resources(get_settings()))


def load_once(build: Callable[[], dg.Definitions]) -> dg.Definitions:
    """`build()`'s definitions, built once per process and environment (both locations load theirs through it).

    Dagster calls a location's lazy `defs` several times in one run worker (execution plan, each step's job, the
    resources): built each time, the main location's cost 1-4 s (the dbt manifest, every program's assets), which a
    run or a sensor-launched run would pay again and again.  The settings come from the environment, so it is the key.
    """
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("ENGAGE_", "DBT_"))))
    return _built_for(build, environment)


@cache
def _built_for(build: Callable[[], dg.Definitions], environment: tuple[tuple[str, str], ...]) -> dg.Definitions:
    built = build()
    # Everything built so far lives as long as the process.  Frozen, it is left out of every later garbage
    # collection: a full one otherwise re-scans its ~400,000 objects (0.23 s), in every stage's memory release and
    # in the automatic collections a large partition triggers.
    gc.freeze()
    return built


def load_event_definitions() -> dg.Definitions:
    """This location's definitions, built once per process (`load_once`)."""
    return load_once(build_event_definitions)


@dg.definitions
def defs() -> dg.Definitions:
    return load_event_definitions()
