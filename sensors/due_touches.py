"""Due-touch sensors: one per program, launching `<group>_deliver` when the delivery ledger has touches due or in
doubt.  Running by default: nothing waits for a click.

The run key is derived from the ledger, never from the clock alone:

- the DUE SET — how many touches are due and the latest due time among them — and, when the ledger holds touches
  left in `sending` longer than the claim lease (their run died between claim and outcome), the claim token of
  the first of them: ticks that see the same ledger request the same run, which Dagster creates once;
- the ATTEMPT — how many runs requested for that same ledger state have finished (run storage, by the
  `engage/due_set` tag).  A run that failed before it changed the ledger leaves the same due set behind; its
  finished run makes the next key differ, so the touches are retried on a following tick instead of waiting for
  unrelated new ones.  A repeated attempt waits `retry_wait_s(n)` after the last one ended (1 min, doubling, at
  most an hour), so a delivery job that keeps failing is not relaunched every 30 s.

A run of the job still queued or in progress means no new request (it takes every due touch anyway) — except when
touches are in doubt: a claim older than the lease belongs to a process that died (the engine's RECOVERY RULE uses
the same lease), even if Dagster still shows its run as started, so the sensor requests a recovery run.  Every
delivery run resolves the in-doubt touches first (`engage_assets.delivery.recovery`).  `run_key` only makes run
creation exactly-once (ARCHITECTURE §10); each message is sent once because the ledger claims it.
"""

import json
import time

import dagster as dg

from engage_assets.delivery.engine import EngineConfig
from engage_assets.domain.config import ProgramBase
from resources.delivery_ledger.base import DeliveryLedgerBackend
from resources.delivery_ledger.resource import DeliveryLedgerResource

ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
DUE_SET_TAG = "engage/due_set"  # the ledger state a run was requested for (its run key without the attempt)
CLAIM_LEASE_S = EngineConfig.claim_lease_s  # the delivery run's default lease (`DeliveryRunConfig.claim_lease_s`)
RETRY_WAIT_S = 60
MAX_RETRY_WAIT_S = 3600


def due_run_key(program_id: str, due: int, latest_due_at: int, doubt: str | None = None) -> str:
    """The key of a ledger state: the due set, and the first in-doubt claim's token (if any)."""
    key = f"{program_id}:due{due}:upto{latest_due_at}"
    return f"{key}:doubt{doubt}" if doubt else key


def attempt_key(due_set: str, finished: int) -> str:
    """The run key of the next attempt at a ledger state after `finished` runs for it ended."""
    return due_set if finished == 0 else f"{due_set}:attempt{finished + 1}"


def retry_wait_s(finished: int) -> int:
    """How long after the last of `finished` (>= 1) runs for a ledger state the next attempt waits."""
    return min(RETRY_WAIT_S * 2 ** (finished - 1), MAX_RETRY_WAIT_S)


def in_doubt_token(ledger: DeliveryLedgerBackend, program_id: str, claimed_before: int) -> str | None:
    """The claim token (a short prefix) of the first touch left in `sending` since before `claimed_before`, or
    None when there is none.  The token changes once a run re-claims it, so a new doubt gets a new key."""
    for page in ledger.in_doubt(program_id, claimed_before, page_size=1):
        if page:
            return (page[0].claim_token or "none")[:12]
    return None


def deliver_job_name(program: ProgramBase) -> str:
    """The delivery job the sensor launches (`engage_assets.assets.delivery` defines it under this name)."""
    return f"{program.group}_deliver"


def next_request(
    instance: dg.DagsterInstance, program: ProgramBase, job_name: str, due_set: str, due: int, now: float
) -> dg.RunRequest | dg.SkipReason:
    """The run request for a ledger state: its first attempt, or the next one once every earlier run for it ended
    (and the retry wait since the last has passed)."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, tags={DUE_SET_TAG: due_set}))
    running = [r.dagster_run for r in records if not r.dagster_run.is_finished]
    if running:
        return dg.SkipReason(f"{due} touches due; run {running[0].run_id} is still delivering them")
    finished = len(records)
    if finished:
        last_end = max((r.end_time or r.update_timestamp.timestamp()) for r in records)
        wait = retry_wait_s(finished) - (now - last_end)
        if wait > 0:
            status = max(records, key=lambda r: r.end_time or 0).dagster_run.status.value
            return dg.SkipReason(
                f"{finished} run(s) for these touches ended (last: {status}); next try in {wait:.0f} s"
            )
    tags = {"engage/program": program.programId, "engage/due": str(due), DUE_SET_TAG: due_set}
    return dg.RunRequest(run_key=attempt_key(due_set, finished), tags=tags)


def build_due_touch_sensor(
    program: ProgramBase, job_name: str, claim_lease_s: int = CLAIM_LEASE_S
) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{program.group}_due_touches",
        job_name=job_name,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"{program.programName}: launch a delivery run when touches are due, when an earlier run "
        "for them failed, or when a dead run left touches in `sending`.",
    )
    def due_touches(context: dg.SensorEvaluationContext, delivery_ledger: DeliveryLedgerResource):
        ledger = delivery_ledger.ledger()
        now = int(time.time())
        due, latest = ledger.due_summary(program.programId, now)
        doubt = in_doubt_token(ledger, program.programId, now - claim_lease_s)
        if not due and doubt is None:
            nxt = ledger.next_due_at(program.programId)
            return dg.SkipReason(f"no touches due (next at epoch {nxt})" if nxt else "no touches planned")
        if doubt is None:
            active = context.instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=ACTIVE), limit=1)
            if active:
                return dg.SkipReason(f"{due} touches due; run {active[0].run_id} is still delivering")
        due_set = due_run_key(program.programId, due, int(latest or 0), doubt)
        request = next_request(context.instance, program, job_name, due_set, due, time.time())
        if isinstance(request, dg.RunRequest):
            context.update_cursor(json.dumps({"last_run_key": request.run_key}))
        return request

    return due_touches
