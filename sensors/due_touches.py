"""Due-touch sensors: one per program, launching `<group>_deliver` when the delivery ledger has touches due.

The run key is derived from the ledger's due set (how many touches are due and the latest due time among them),
never from the clock: ticks that see the same due set request the same run, which Dagster creates once.  A run of
the job still queued or in progress means no new request (it takes every due touch anyway).  `run_key` only makes
run creation exactly-once (ARCHITECTURE §10); each message is sent once because the ledger claims it.
"""

import json
import time

import dagster as dg

from engage_assets.domain.config import ProgramBase
from resources.delivery_ledger.resource import DeliveryLedgerResource

ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def due_run_key(program_id: str, due: int, latest_due_at: int) -> str:
    return f"{program_id}:due{due}:upto{latest_due_at}"


def deliver_job_name(program: ProgramBase) -> str:
    """The delivery job the sensor launches (`engage_assets.assets.delivery` defines it under this name)."""
    return f"{program.group}_deliver"


def build_due_touch_sensor(program: ProgramBase, job_name: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{program.group}_due_touches",
        job_name=job_name,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"{program.programName}: launch a delivery run when touches are due.",
    )
    def due_touches(context: dg.SensorEvaluationContext, delivery_ledger: DeliveryLedgerResource):
        ledger = delivery_ledger.ledger()
        due, latest = ledger.due_summary(program.programId, int(time.time()))
        if not due:
            nxt = ledger.next_due_at(program.programId)
            return dg.SkipReason(f"no touches due (next at epoch {nxt})" if nxt else "no touches planned")
        active = context.instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=ACTIVE), limit=1)
        if active:
            return dg.SkipReason(f"{due} touches due; run {active[0].run_id} is still delivering")
        key = due_run_key(program.programId, due, int(latest or 0))
        context.update_cursor(json.dumps({"last_run_key": key}))
        return dg.RunRequest(run_key=key, tags={"engage/program": program.programId, "engage/due": str(due)})

    return due_touches
