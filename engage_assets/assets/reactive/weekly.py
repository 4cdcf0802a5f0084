"""A reactive program's weekly jobs from the spec's schedule (the daily ones are reports: the outcomes issue's).

- `<group>_candidate_cleanup`, Sunday 01:00 UTC ("Cleanup Expired Candidates: DynamoDB TTL handles automatic
  deletion; verify cleanup completed"): a backend without a TTL sweeper (SQLite) deletes its expired candidates and
  dedup claims here; then every backend is checked: candidates that expired more than `grace_hours` ago (48 by
  default: DynamoDB's sweeper deletes within days of expiry, not at once) and are still stored fail the run, so the
  run-failure alert says the sweeper fell behind (reads ignore expired items either way: nothing is served from
  them).  The counts are recorded as an observation of the program's `stored_candidates`.  The job is the batch
  programs' (`engage_assets.assets.cleanup`), with the dedup claims.
- `<group>_model_retraining`, Sunday 03:00 UTC or the model's `retrainSchedule` ("Model Retraining: retrain the
  purchase intent model, evaluate, deploy if improved"): the program's model asset, which promotes a new version only
  if it beats a naive one-feature baseline and the current one.
  The deployment-wide `model_retraining` job (monthly) retrains it too, with every other model.

Both schedules run by default when the program is enabled.
"""
# No `from __future__ import annotations`: Dagster reads the op's context annotation at definition time.

from typing import Any

import dagster as dg

from engage_assets.assets.cleanup import build_candidate_cleanup as candidate_cleanup
from engage_assets.assets.cleanup import cleanup_candidates, weekly_schedule
from engage_assets.assets.reactive.names import intent_model_key
from engage_assets.domain.config import ReactiveProgram
from engage_assets.reactive.training import intent_model

RETRAIN_CRON = "0 3 * * 0"  # Sunday 03:00

__all__ = ["build_candidate_cleanup", "build_model_retraining", "cleanup_candidates"]


def build_candidate_cleanup(program: ReactiveProgram) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """`<group>_candidate_cleanup` and its Sunday 01:00 schedule: the batch programs' (`engage_assets.assets.cleanup`),
    with the expired dedup claims purged too."""
    return candidate_cleanup(program, claims=True)


def build_model_retraining(program: ReactiveProgram) -> tuple[Any, dg.ScheduleDefinition]:
    """`<group>_model_retraining` (the program's model asset) and its Sunday 03:00 schedule."""
    job = dg.define_asset_job(
        f"{program.group}_model_retraining",
        selection=dg.AssetSelection.assets(intent_model_key(program)),
        tags={"engage/program": program.programId},
        description=f"{program.programName}: retrain the purchase-intent model; promoted only if it beats the "
        "current version (weekly).",
    )
    return job, weekly_schedule(program, job, intent_model(program).retrainSchedule or RETRAIN_CRON)
