"""EventBridge in front of the production event source: the rule that routes matching events to the SQS queue
(`provision_eventbridge_to_sqs`, idempotent: run it at deploy time, or from tests against moto), and a publisher
(`EventBridgePublisher`: PutEvents in batches, what the storefront does in production and the tests do here).

The queue's policy lets EventBridge (`events.amazonaws.com`) send to it only from this rule (`aws:SourceArn`);
provisioning owns the queue's policy and redrive policy and overwrites them on every run.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError
from pydantic import PrivateAttr

from resources.aws import AwsClientConfig
from resources.dynamodb import error_code
from resources.events.base import SendResult
from resources.events.batching import Indexed, pack, settle

PUT_EVENTS_BATCH = 10  # PutEvents' maximum entries per call
PUT_EVENTS_BYTES = 262_144  # PutEvents' maximum request size
RETRYABLE_ENTRY_ERRORS = {"InternalFailure", "ThrottlingException"}
DLQ_RETENTION_S = 14 * 86_400  # SQS's longest: dead letters outlive the queue's own retention


def ensure_event_bus(events: Any, name: str) -> None:
    """Create the custom event bus unless it exists (the default bus always does)."""
    if name == "default":
        return
    try:
        events.describe_event_bus(Name=name)
        return
    except ClientError as err:
        if error_code(err) != "ResourceNotFoundException":
            raise
    try:
        events.create_event_bus(Name=name)
    except ClientError as err:  # created by a concurrent run in between
        if error_code(err) != "ResourceAlreadyExistsException":
            raise


def ensure_queue(sqs: Any, name: str) -> tuple[str, str]:
    """The queue's URL and ARN, creating it (attributes are set separately, so a re-run never conflicts with the
    attributes of the existing queue)."""
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as err:
        if "NonExistentQueue" not in error_code(err) and "QueueDoesNotExist" not in error_code(err):
            raise
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def eventbridge_send_policy(queue_arn: str, rule_arn: str) -> str:
    """A queue policy that lets EventBridge send messages to the queue from this rule only."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EventBridgeRuleSendMessage",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
    )


def provision_eventbridge_to_sqs(
    client_config: AwsClientConfig,
    event_bus_name: str,
    rule_name: str,
    event_pattern: dict[str, Any],
    queue_name: str,
    dlq_name: str,
    max_receive_count: int,
) -> tuple[str, str, str]:
    """Create or update the bus, the dead-letter queue, the queue (its RedrivePolicy and EventBridge send policy),
    the rule with `event_pattern` and its target (the queue); returns (queue_url, dlq_url, rule_arn)."""
    events, sqs = client_config.aws_client("events"), client_config.aws_client("sqs")
    ensure_event_bus(events, event_bus_name)
    dlq_url, dlq_arn = ensure_queue(sqs, dlq_name)
    queue_url, queue_arn = ensure_queue(sqs, queue_name)
    rule_arn = events.put_rule(
        Name=rule_name, EventBusName=event_bus_name, EventPattern=json.dumps(event_pattern), State="ENABLED"
    )["RuleArn"]
    sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)})
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={"RedrivePolicy": json.dumps(redrive), "Policy": eventbridge_send_policy(queue_arn, rule_arn)},
    )
    targets = events.put_targets(
        Rule=rule_name, EventBusName=event_bus_name, Targets=[{"Id": queue_name[:64], "Arn": queue_arn}]
    )
    if targets.get("FailedEntryCount"):
        raise RuntimeError(f"PutTargets on rule {rule_name}: {targets.get('FailedEntries')}")
    return queue_url, dlq_url, rule_arn


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as PutEvents counts it (roughly: its source, detail type, detail and resources)."""
    parts = [entry.get("Source", ""), entry.get("DetailType", ""), entry.get("Detail", ""), *entry.get("Resources", [])]
    return sum(len(str(p).encode()) for p in parts) + 14  # + the Time field


class EventBridgePublisher(AwsClientConfig):
    """PutEvents to `event_bus_name` (an entry's own `EventBusName` wins); `Detail` may be a dict (sent as JSON)."""

    event_bus_name: str = "default"

    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        """The boto3 EventBridge client, made on first use."""
        if self._client is None:
            self._client = self.aws_client("events")
        return self._client

    def put_events(self, entries: list[dict[str, Any]]) -> list[SendResult]:
        """PutEvents in batches of 10; one result per entry, in order (the event id, or the error code).  Entries
        EventBridge failed on its side (InternalFailure, throttling) are retried."""
        prepared = [self._prepared(e) for e in entries]
        results: dict[int, SendResult] = {}
        for batch in pack(prepared, PUT_EVENTS_BATCH, PUT_EVENTS_BYTES, entry_size):
            results.update(settle(self._put_batch, batch))
        return [results[i] for i in range(len(entries))]

    def _prepared(self, entry: dict[str, Any]) -> dict[str, Any]:
        out = {"EventBusName": self.event_bus_name, **entry}
        if not isinstance(out.get("Detail", ""), str):
            out["Detail"] = json.dumps(out["Detail"])
        return out

    def _put_batch(self, batch: Indexed[dict[str, Any]]) -> dict[int, tuple[SendResult, bool]]:
        response = self.client().put_events(Entries=[entry for _, entry in batch])
        answered: dict[int, tuple[SendResult, bool]] = {}
        for (i, _), result in zip(batch, response["Entries"], strict=True):  # PutEvents answers in request order
            code = result.get("ErrorCode")
            answered[i] = (SendResult(message_id=result.get("EventId"), error=code), code in RETRYABLE_ENTRY_ERRORS)
        return answered
