"""Run-failure alerts: every failed Engage run (a program's partition, dbt, retraining, delivery) becomes an alert.

The alert says what failed and where to look (job, run id, partition, failed steps, the error's class and first
line); it carries no row data, so no personal data reaches the alert channel.
"""

from typing import Any

import dagster as dg

from resources.alerts.base import AlertSink

MAX_ERROR_CHARS = 300


def failure_alert(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    run = context.dagster_run
    steps = sorted({e.step_key for e in context.get_step_failure_events() if e.step_key})
    error = context.failure_event.event_specific_data.error if context.failure_event.event_specific_data else None
    first_steps = [e for e in context.get_step_failure_events() if e.event_specific_data]
    step_error = first_steps[0].event_specific_data.error if first_steps else error  # type: ignore[union-attr]
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
        "error": (message[0] if message else "")[:MAX_ERROR_CHARS],
    }


@dg.run_failure_sensor(
    name="engage_run_failure_alerts",
    minimum_interval_seconds=30,
    description="Every failed run of this code location becomes an alert (file locally, SNS in "
    "production): job, partition, failed steps, error class and first line.",
)
def engage_run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertSink) -> None:
    alert = failure_alert(context)
    where = alerts.send(alert)
    context.log.info(f"alert for run {alert['run_id']} ({alert['job']}) sent to {where}")
