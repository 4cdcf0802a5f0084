"""Asset factory: one program YAML → its Dagster asset family, checks, partitioned job and schedule.

Keys are `[group, stage]` for the stages source_candidates → eligible_candidates → scored_candidates → offers →
stored_candidates → warehouse_export, and `[group, "<model>_model"]` for each model the program trains.
Each program is partitioned on its own cadence, read from `batchSchedule`, and its schedule uses that cron.

One module per stage (`source`, `eligible`, `scoring`, `offers`, `store`, `export`), the offers checks in `checks`,
the partitions in `partitions` and the job and schedule in `jobs`; `build_program` assembles them.
"""

from dataclasses import dataclass
from typing import Any

import dagster as dg

from engage_assets.assets.call_assignment import build_call_assignment
from engage_assets.assets.cleanup import build_candidate_cleanup
from engage_assets.assets.program.common import BATCH_RUN_TAG, STAGES, erased_since, model_asset_name, without_customers
from engage_assets.assets.program.drift import drift_checks
from engage_assets.assets.program.eligible import eligible_asset
from engage_assets.assets.program.export import export_asset
from engage_assets.assets.program.jobs import batch_job, batch_schedule
from engage_assets.assets.program.model import model_asset, model_keys, retraining_jobs
from engage_assets.assets.program.offers import offers_asset
from engage_assets.assets.program.partitions import (
    SINGLE_RUN,
    PartitionWindow,
    each_partition,
    partitions_for,
    stream_partitions,
)
from engage_assets.assets.program.scoring import scored_asset
from engage_assets.assets.program.source import source_asset
from engage_assets.assets.program.store import store_asset
from engage_assets.domain.config import ProgramConfig

__all__ = [
    "BATCH_RUN_TAG",
    "SINGLE_RUN",
    "STAGES",
    "PartitionWindow",
    "ProgramDefs",
    "build_program",
    "each_partition",
    "erased_since",
    "model_asset_name",
    "partitions_for",
    "stream_partitions",
    "without_customers",
]


@dataclass
class ProgramDefs:
    """What one program contributes to the definitions."""

    assets: list[Any]
    asset_checks: list[Any]
    jobs: list[Any]
    schedules: list[Any]
    model_keys: list[dg.AssetKey]


def build_program(program: ProgramConfig) -> ProgramDefs:
    """The program's model assets, its six stage assets (in `STAGES` order), its batch job and schedule, its
    cleanup job (and call assignment job) with their schedules, and one
    retraining job and schedule per model."""
    parts = partitions_for(program)
    stage_assets = [
        source_asset(program, parts),
        eligible_asset(program, parts),
        scored_asset(program, parts),
        offers_asset(program, parts),
        store_asset(program, parts),
        export_asset(program, parts),
    ]
    job = batch_job(program, parts, stage_assets)
    # The spec's Scheduled Jobs beside the batch: the weekly cleanup, and the call assignment where configured.
    weekly = [build_candidate_cleanup(program), *filter(None, [build_call_assignment(program)])]
    retraining = retraining_jobs(program)
    return ProgramDefs(
        assets=[*(model_asset(program, spec) for spec in program.scoringModels), *stage_assets],
        asset_checks=drift_checks(program, parts),
        jobs=[job, *(j for j, _ in weekly), *(j for j, _ in retraining)],
        schedules=[batch_schedule(program, job), *(s for _, s in weekly), *(s for _, s in retraining)],
        model_keys=model_keys(program),
    )
