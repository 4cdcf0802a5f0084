"""The program's partitioned batch job and the schedule built from it (the program's `batchSchedule` cron).

`Any` below stands for Dagster's unresolved asset job and partitioned schedule, which it does not export.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from engage_assets.assets.program.common import BATCH_RUN_TAG, program_tags, stage_key
from engage_assets.domain.config import ProgramConfig


def batch_job(
    program: ProgramConfig, parts: dg.TimeWindowPartitionsDefinition, stage_assets: Sequence[dg.AssetsDefinition]
) -> Any:
    """`<group>_batch`: the stages and the touch plan, one partition (or a range) per run.  Its runs carry
    `engage/batch: <programId>`, which the run queue limits to one run at a time per program (dagster.yaml)."""
    return dg.define_asset_job(
        name=f"{program.group}_batch",
        partitions_def=parts,
        tags={**program_tags(program), BATCH_RUN_TAG: program.programId},
        # The stages, then the touch plan the delivery builds from the offers (engage_assets/delivery).
        selection=dg.AssetSelection.assets(*stage_assets) | dg.AssetSelection.assets(stage_key(program, "touch_plan")),
        description=f"{program.programName}: source → filters → scores → offers → store → export → touch plan, "
        "one partition (or a range).",
    )


def batch_schedule(program: ProgramConfig, job: Any) -> Any:
    """`<group>_schedule`: the batch job on the partitions' cron, each tick running the partition that just ended.
    It runs by default for an enabled program (`enabled: true`) and is stopped for a disabled one."""
    status = dg.DefaultScheduleStatus.RUNNING if program.enabled else dg.DefaultScheduleStatus.STOPPED
    return dg.build_schedule_from_partitioned_job(job, name=f"{program.group}_schedule", default_status=status)
