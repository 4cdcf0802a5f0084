"""`<group>_candidate_cleanup`: the spec's weekly "Cleanup Expired Candidates" (Sunday 01:00 UTC: "DynamoDB TTL handles
automatic deletion; verify cleanup completed"), for every program, batch or reactive.

A backend without a TTL sweeper (SQLite) deletes its expired candidates here (and, for a reactive program, its
expired dedup claims); then every backend is verified: candidates of the program that expired more than
`grace_hours` ago (48 by default: DynamoDB's sweeper deletes within days of expiry, not at once) and are still stored
fail the run, so the run-failure alert says the sweeper fell behind (reads ignore expired items either way: nothing
is served from them).  The counts are recorded as an observation of the program's `stored_candidates`.  The
schedule runs by default when the program is enabled.
"""
# No `from __future__ import annotations`: Dagster reads the op's context annotation at definition time.

from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from engage_assets.domain.config import ProgramBase
from resources.dedup.base import DedupStore
from resources.store.base import CandidateStore

CLEANUP_CRON = "0 1 * * 0"  # Sunday 01:00
STORED = "stored_candidates"


class CleanupConfig(dg.Config):
    as_of: str | None = Field(default=None, description="The cleanup clock (ISO 8601, UTC if naive); default: now.")
    grace_hours: int = Field(
        default=48, ge=0, description="How long after expiry a candidate may still be stored before it is an error."
    )


def cleanup_clock(as_of: str | None) -> datetime:
    """The cleanup's `now`: `as_of` (UTC if naive) or the current time."""
    if not as_of:
        return datetime.now(UTC)
    dt = datetime.fromisoformat(as_of)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def cleanup_candidates(
    program_id: str, store: CandidateStore, dedup: DedupStore | None, now: float, grace_hours: int
) -> dict[str, int]:
    """Purge what the backend does not sweep itself (and the expired dedup claims, when given), then count the
    program's candidates left over the grace period."""
    purged = store.purge_expired(now)
    claims_purged = dedup.purge_expired(now) if dedup is not None else 0
    overdue = store.expired_present(program_id, now - grace_hours * 3600)
    counts = {"candidates_purged": purged, "claims_purged": claims_purged, "expired_still_stored": overdue}
    return counts if dedup is not None else {k: v for k, v in counts.items() if k != "claims_purged"}


def weekly_schedule(program: ProgramBase, job: Any, cron: str) -> dg.ScheduleDefinition:
    """`<job>_schedule` on `cron` (UTC), running by default when the program is enabled."""
    status = dg.DefaultScheduleStatus.RUNNING if program.enabled else dg.DefaultScheduleStatus.STOPPED
    return dg.ScheduleDefinition(
        name=f"{job.name}_schedule", job=job, cron_schedule=cron, execution_timezone="UTC", default_status=status
    )


def build_candidate_cleanup(
    program: ProgramBase, claims: bool = False
) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """`<group>_candidate_cleanup` and its Sunday 01:00 schedule (module docstring); `claims`: also purge the
    expired dedup claims (a reactive program's `dedup` resource)."""
    g = program.group

    @dg.op(
        name=f"{g}__cleanup_candidates",
        out=dg.Out(dg.Nothing),
        tags={"engage/program": program.programId},
        required_resource_keys={"store", "dedup"} if claims else {"store"},
        description="Delete expired candidates (and claims) a backend does not sweep itself; fail if any expired "
        "candidate outlived the grace period.",
    )
    def cleanup_op(context: dg.OpExecutionContext, config: CleanupConfig) -> dg.Output:
        now = cleanup_clock(config.as_of).timestamp()
        dedup = context.resources.dedup if claims else None
        counts = cleanup_candidates(program.programId, context.resources.store, dedup, now, config.grace_hours)
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
