"""Run-failure alerts: a failed run becomes one alert with job, partition, steps and error — and no personal data."""

import json

import boto3
import dagster as dg
import pytest

from engage_assets.domain.redaction import redact_values
from resources.alerts.file import FileAlertSink
from resources.alerts.sns import SnsAlertSink
from sensors.run_failures import MAX_ERROR_CHARS, engage_run_failure_alerts

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
CUSTOMER = "C00012345"


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-01"))
def fragile(context: dg.AssetExecutionContext) -> None:
    # What a real failure's first line looks like: the row's own values in the message.
    raise dg.Failure(
        description=f"schema drift: column 'delay_days' is missing for customer {CUSTOMER} ({EMAIL}, sms {PHONE}); "
        f"could not convert string '{EMAIL}' to INT64, contact=\"{PHONE}\"\nsecond line {EMAIL} " + "x" * 1000
    )


def _failed_run_context():
    instance = dg.DagsterInstance.ephemeral()
    job = dg.Definitions(assets=[fragile], jobs=[dg.define_asset_job("fragile_job", [fragile])]).resolve_job_def(
        "fragile_job"
    )
    result = job.execute_in_process(
        instance=instance,
        partition_key="2026-11-20",
        raise_on_error=False,
        tags={"engage/program": "proactive-refunds"},
    )
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    return dg.build_run_status_sensor_context(
        sensor_name=engage_run_failure_alerts.name, dagster_instance=instance, dagster_run=run, dagster_event=failure
    ).for_run_failure()


def test_failed_run_becomes_a_file_alert(tmp_path):
    sink = FileAlertSink(path=str(tmp_path / "alerts.jsonl"))
    engage_run_failure_alerts(_failed_run_context(), alerts=sink)
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 1
    alert = json.loads(lines[0])
    assert alert["job"] == "fragile_job"
    assert alert["partition"] == "2026-11-20"
    assert alert["program"] == "proactive-refunds"
    assert alert["failed_steps"] == ["fragile"]
    assert "schema drift: column <value> is missing for customer <id> (<email>, sms <number>)" in alert["error"]
    assert "to INT64" in alert["error"] and alert["error_class"] == "Failure"
    assert "second line" not in alert["error"] and len(alert["error"]) <= MAX_ERROR_CHARS


def test_sns_alert_sink_publishes_to_the_topic(moto_endpoint):
    kw = {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}
    sns, sqs = boto3.client("sns", **kw), boto3.client("sqs", **kw)
    topic = sns.create_topic(Name="engage-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    sink = SnsAlertSink(topic_arn=topic, **kw)
    message_id = sink.send({"job": "win_back_batch", "run_id": "r1", "error": "boom"})
    assert message_id
    received = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    body = json.loads(json.loads(received[0]["Body"])["Message"])
    assert body == {"job": "win_back_batch", "run_id": "r1", "error": "boom"}


@pytest.mark.parametrize("text", [EMAIL, PHONE, "7946", CUSTOMER, "delay_days"])
def test_alert_never_carries_data_values_from_the_error(tmp_path, text):
    # The failing run's error holds an e-mail address, a phone number, a customer id and a quoted literal on its
    # first line (and more below it): none of them reaches the alert.
    sink = FileAlertSink(path=str(tmp_path / "a.jsonl"))
    context = _failed_run_context()
    engage_run_failure_alerts(context, alerts=sink)
    assert text not in (tmp_path / "a.jsonl").read_text()


@pytest.mark.parametrize(
    "line, expected",
    [
        ("Could not convert string 'jane@x.com' to INT64", "Could not convert string <value> to INT64"),
        ("bounce from bob.smith+promo@mail.example.co.uk", "bounce from <email>"),
        ("sms to (555) 123-4567 refused", "sms to <number> refused"),
        ("order O0000012345 / 3f2b9c1e-8d4a-4b7e-9f00-1a2b3c4d5e6f not found", "order <id> / <id> not found"),
        ("KeyError: customer_id=abc", "KeyError: customer_id=<value>"),
        ("timeout after 30 s in step scored_candidates", "timeout after 30 s in step scored_candidates"),
    ],
)
def test_redact_values(line, expected):
    assert redact_values(line) == expected
