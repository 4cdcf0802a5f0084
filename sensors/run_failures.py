"""Run-failure alerts: every failed Engage run (a program's partition, dbt, retraining, delivery) becomes an alert.

The alert says what failed and where to look (job, run id, partition, failed steps, the error's class and first
line); it carries no row data, and the error's line has its values replaced (e-mail addresses, phone numbers, quoted
literals, ids: `engage_assets.domain.redaction`), so no personal data reaches the alert channel.  The whole error
stays in the run's own log, in Dagster, for whoever may read it there.
"""

from typing import Any

import dagster as dg

from engage_assets.domain.redaction import redact_values
from resources.alerts.base import AlertSink

MAX_ERROR_CHARS = 300


def failure_alert(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    run = context.dagster_run
    steps = sorted({e.step_key for e in context.get_step_failure_events() if e.step_key})
    # The first failed step's error says most; a run that failed outside any step has only the run's own error.
    errors = [_error_of(e) for e in context.get_step_failure_events()]
    step_error = next((e for e in errors if e is not None), None) or _error_of(context.failure_event)
    message = (getattr(step_error, "message", "") or context.failure_event.message or "").strip().splitlines()
    return {
        "job": run.job_name,
        "run_id": run.run_id,
        "partition": run.tags.get("dagster/partition")
        or (
            f"{run.tags['dagster/asset_partition_range_start']}...{run.tags['dagster/asset_partition_range_end']}"
            if "dagster/asset_partition_range_start" in run.tags
            else None
        ),
        "program": run.tags.get("engage/program"),
        "failed_steps": steps,
        "error_class": getattr(step_error, "cls_name", None),
        "error": redact_values(message[0] if message else "")[:MAX_ERROR_CHARS],
    }


def _error_of(event: dg.DagsterEvent) -> Any:
    """The serialisable error a failure event carries (`SerializableErrorInfo`), if any."""
    return getattr(event.event_specific_data, "error", None)


@dg.run_failure_sensor(
    name="engage_run_failure_alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    # Both of Engage's code locations: the event path's decision runs (`engage_events`) fail here too.
    monitor_all_code_locations=True,
    description="Every failed run of Engage's code locations (the main one and the event path's) becomes an alert "
    "(file locally, SNS in production): job, partition, failed steps, error class and first line.",
)
def engage_run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertSink) -> None:
    alert = failure_alert(context)
    where = alerts.send(alert)
    context.log.info(f"alert for run {alert['run_id']} ({alert['job']}) sent to {where}")
