"""A reactive program's weekly jobs from the spec's schedule (the daily ones are reports: the outcomes issue's).

- `<group>_candidate_cleanup`, Sunday 01:00 UTC ("Cleanup Expired Candidates: DynamoDB TTL handles automatic
  deletion; verify cleanup completed"): a backend without a TTL sweeper (SQLite) deletes its expired candidates and
  dedup claims here; then every backend is checked: candidates that expired more than `grace_hours` ago (48 by
  default: DynamoDB's sweeper deletes within days of expiry, not at once) and are still stored fail the run, so the
  run-failure alert says the sweeper fell behind (reads ignore expired items either way: nothing is served from
  them).  The counts are recorded as an observation of the program's `stored_candidates`.
- `<group>_model_retraining`, Sunday 03:00 UTC ("Model Retraining: retrain the purchase intent model, evaluate,
  deploy if improved"): the program's model asset, which promotes a new version only if it beats the current one.
  The deployment-wide `model_retraining` job (monthly) retrains it too, with every other model.

Both schedules run by default when the program is enabled.
"""
# No `from __future__ import annotations`: Dagster reads the op's context annotation at definition time.

from typing import Any

import dagster as dg
from pydantic import Field

from engage_assets.assets.reactive.decisions import STAGES, decision_clock
from engage_assets.assets.reactive.model import intent_model_key
from engage_assets.domain.config import ReactiveProgram
from resources.dedup.base import DedupStore
from resources.store.base import CandidateStore

CLEANUP_CRON = "0 1 * * 0"  # Sunday 01:00
RETRAIN_CRON = "0 3 * * 0"  # Sunday 03:00
STORED = STAGES[4][0]  # stored_candidates


class CleanupConfig(dg.Config):
    as_of: str | None = Field(default=None, description="The cleanup clock (ISO 8601, UTC if naive); default: now.")
    grace_hours: int = Field(
        default=48, ge=0, description="How long after expiry a candidate may still be stored before it is an error."
    )


def cleanup_candidates(
    program_id: str, store: CandidateStore, dedup: DedupStore, now: float, grace_hours: int
) -> dict[str, int]:
    """Purge what the backend does not sweep itself, then count what is left over the grace period."""
    purged = store.purge_expired(now)
    claims_purged = dedup.purge_expired(now)
    overdue = store.expired_present(program_id, now - grace_hours * 3600)
    return {"candidates_purged": purged, "claims_purged": claims_purged, "expired_still_stored": overdue}


def weekly_schedule(program: ReactiveProgram, job: Any, cron: str) -> dg.ScheduleDefinition:
    """`<job>_schedule` on `cron` (UTC), running by default when the program is enabled."""
    status = dg.DefaultScheduleStatus.RUNNING if program.enabled else dg.DefaultScheduleStatus.STOPPED
    return dg.ScheduleDefinition(
        name=f"{job.name}_schedule", job=job, cron_schedule=cron, execution_timezone="UTC", default_status=status
    )


def build_candidate_cleanup(program: ReactiveProgram) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """`<group>_candidate_cleanup` and its Sunday 01:00 schedule (module docstring)."""
    g = program.group

    @dg.op(
        name=f"{g}__cleanup_candidates",
        out=dg.Out(dg.Nothing),
        tags={"engage/program": program.programId},
        description="Delete expired candidates and claims a backend does not sweep itself; fail if any expired "
        "candidate outlived the grace period.",
    )
    def cleanup_op(
        context: dg.OpExecutionContext, config: CleanupConfig, store: CandidateStore, dedup: DedupStore
    ) -> dg.Output:
        now = decision_clock(config.as_of).timestamp()
        counts = cleanup_candidates(program.programId, store, dedup, now, config.grace_hours)
        context.log_event(
            dg.AssetObservation(
                asset_key=dg.AssetKey([g, STORED]), metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()}
            )
        )
        if counts["expired_still_stored"]:
            raise dg.Failure(
                f"{counts['expired_still_stored']} candidates of {program.programId} expired over "
                f"{config.grace_hours} h ago are still stored: the store's expiry sweeper is behind",
                metadata=counts,
            )
        return dg.Output(None, metadata=counts)

    @dg.job(
        name=f"{g}_candidate_cleanup",
        executor_def=dg.in_process_executor,
        tags={"engage/program": program.programId},
        description=f"{program.programName}: delete expired candidates and verify the cleanup (weekly).",
    )
    def cleanup_job() -> None:
        cleanup_op()

    return cleanup_job, weekly_schedule(program, cleanup_job, CLEANUP_CRON)


def build_model_retraining(program: ReactiveProgram) -> tuple[Any, dg.ScheduleDefinition]:
    """`<group>_model_retraining` (the program's model asset) and its Sunday 03:00 schedule."""
    job = dg.define_asset_job(
        f"{program.group}_model_retraining",
        selection=dg.AssetSelection.assets(intent_model_key(program)),
        tags={"engage/program": program.programId},
        description=f"{program.programName}: retrain the purchase-intent model; promoted only if it beats the "
        "current version (weekly).",
    )
    return job, weekly_schedule(program, job, RETRAIN_CRON)
