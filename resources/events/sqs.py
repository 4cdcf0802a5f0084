"""The production event source: an SQS standard queue whose RedrivePolicy (maxReceiveCount) moves a message that
was received too often to its dead-letter queue; an EventBridge rule feeds it (`resources.events.eventbridge`).

SQS keeps the counts, the visibility timeouts and the redrive itself; this class maps the interface onto its batch
calls (10 entries each) and retries the entries a batch call failed in part (`resources.events.batching`).  A
quarantined message is sent to the dead-letter queue with a `reason` message attribute (and its original id,
receive count and sent time) and then deleted from the queue: two calls, so a crash in between leaves it in both,
and the consumer quarantines it again (the dead-letter queue may then hold it twice).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError
from pydantic import PrivateAttr

from resources.aws import AwsClientConfig
from resources.dynamodb import error_code
from resources.events.base import MAX_RECEIVES, EventSource, Message, SendResult, check_reason
from resources.events.batching import Indexed, pack, settle

BATCH = 10  # SendMessageBatch, DeleteMessageBatch, ChangeMessageVisibilityBatch and ReceiveMessage maximum
MAX_WAIT_S = 20  # ReceiveMessage's longest poll
SYSTEM_ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp"]
GONE = {"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidParameterValue"}
"""Error codes of a receipt that no longer holds its message (deleted, dead-lettered, received again)."""


def short_code(code: str) -> str:
    """An SQS error code without its `AWS.SimpleQueueService.` prefix (the query protocol's spelling)."""
    return code.rsplit(".", 1)[-1]


def to_message(raw: dict[str, Any]) -> Message:
    """A ReceiveMessage entry as a Message; a dead letter's own attributes (quarantine) win over the system's."""
    system = raw.get("Attributes", {})
    own = {k: v.get("StringValue") for k, v in raw.get("MessageAttributes", {}).items()}
    return Message(
        message_id=own.get("message_id") or raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw["Body"],
        receive_count=int(own.get("receive_count") or system.get("ApproximateReceiveCount", 1)),
        sent_at=float(own.get("sent_at") or int(system.get("SentTimestamp", 0)) / 1000),
        reason=own.get("reason"),
    )


class SqsEventSource(AwsClientConfig, EventSource):
    """An SQS queue (`queue_url`) and its dead-letter queue (`dlq_url`, the queue's RedrivePolicy target)."""

    queue_url: str
    dlq_url: str
    max_batch_bytes: int = 262_144  # SendMessageBatch's payload limit (the sum of the bodies)

    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        """The boto3 SQS client, made on first use (constructing the resource needs no AWS access)."""
        if self._client is None:
            self._client = self.aws_client("sqs")  # a race makes two: both work
        return self._client

    def send(self, bodies: list[str]) -> list[SendResult]:
        """SendMessageBatch, 10 bodies (at most `max_batch_bytes`) per call; entries failed on SQS's side are
        retried, a failure that is the sender's (too long, invalid characters) is returned as is."""
        results: dict[int, SendResult] = {}
        for batch in pack(bodies, BATCH, self.max_batch_bytes, lambda b: len(b.encode())):
            results.update(settle(self._send_batch, batch))
        return [results[i] for i in range(len(bodies))]

    def _send_batch(self, batch: Indexed[str]) -> dict[int, tuple[SendResult, bool]]:
        response = self.client().send_message_batch(
            QueueUrl=self.queue_url, Entries=[{"Id": str(i), "MessageBody": body} for i, body in batch]
        )
        answered = {
            int(s["Id"]): (SendResult(message_id=s["MessageId"]), False) for s in response.get("Successful", [])
        }
        for f in response.get("Failed", []):
            answered[int(f["Id"])] = (SendResult(message_id=None, error=f["Code"]), not f["SenderFault"])
        return answered

    def receive(self, max_messages: int, visibility_timeout_s: int | None = None, wait_s: float = 0) -> list[Message]:
        """ReceiveMessage, up to 10 per call, until `max_messages` or a call returns none.  Only the first call
        long-polls (`wait_s` rounded up to whole seconds, at most 20)."""
        out: list[Message] = []
        wait = min(MAX_WAIT_S, math.ceil(wait_s)) if wait_s > 0 else 0
        while len(out) < max_messages:
            request: dict[str, Any] = {
                "QueueUrl": self.queue_url,
                "MaxNumberOfMessages": min(BATCH, max_messages - len(out)),
                "WaitTimeSeconds": 0 if out else wait,
                "AttributeNames": SYSTEM_ATTRIBUTES,
            }
            if visibility_timeout_s is not None:
                request["VisibilityTimeout"] = visibility_timeout_s
            got = self.client().receive_message(**request).get("Messages", [])
            if not got:
                break
            out += [to_message(m) for m in got]
        return out

    def delete(self, receipt_handles: list[str]) -> None:
        """DeleteMessageBatch, 10 per call, entries failed on SQS's side retried.  A receipt whose message is gone
        is no error; any other failure raises (RuntimeError, with the error codes)."""
        for batch in pack(receipt_handles, BATCH, math.inf, lambda r: 0):
            failed = [
                code for code in settle(self._delete_batch, batch).values() if code and short_code(code) not in GONE
            ]
            if failed:
                raise RuntimeError(f"DeleteMessageBatch failed for {len(failed)} receipt(s): {sorted(set(failed))}")

    def _delete_batch(self, batch: Indexed[str]) -> dict[int, tuple[str | None, bool]]:
        response = self.client().delete_message_batch(
            QueueUrl=self.queue_url, Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in batch]
        )
        answered: dict[int, tuple[str | None, bool]] = {
            int(s["Id"]): (None, False) for s in response.get("Successful", [])
        }
        for f in response.get("Failed", []):
            answered[int(f["Id"])] = (f["Code"], not f["SenderFault"])
        return answered

    def change_visibility(self, receipt_handle: str, timeout_s: int) -> bool:
        """ChangeMessageVisibility; False when SQS says the receipt no longer holds an in-flight message."""
        try:
            self.client().change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=timeout_s
            )
        except ClientError as err:
            if short_code(error_code(err)) in GONE:
                return False
            raise
        return True

    def quarantine(self, message: Message, reason: str) -> None:
        """Send the body to the dead-letter queue with `reason` (and the original id, receive count and sent
        time) as message attributes, then delete the original by its receipt."""
        attributes = {
            "reason": check_reason(reason),
            "message_id": message.message_id,
            "receive_count": str(message.receive_count),
            "sent_at": repr(message.sent_at),
        }
        self.client().send_message(
            QueueUrl=self.dlq_url,
            MessageBody=message.body,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )
        self.delete([message.receipt_handle])

    def dead_letters(self, limit: int) -> list[Message]:
        """Peek at the dead-letter queue: receive up to `limit` (hidden while reading, so each call gets new ones),
        then make them visible again.  A message SQS redrove itself has the reason `max_receives`."""
        seen: dict[str, Message] = {}
        while len(seen) < limit:
            got = (
                self.client()
                .receive_message(
                    QueueUrl=self.dlq_url,
                    MaxNumberOfMessages=min(BATCH, limit - len(seen)),
                    VisibilityTimeout=30,
                    AttributeNames=SYSTEM_ATTRIBUTES,
                    MessageAttributeNames=["All"],
                )
                .get("Messages", [])
            )
            if not got:
                break
            for raw in got:
                m = to_message(raw)
                seen[raw["MessageId"]] = m if m.reason else replace(m, reason=MAX_RECEIVES)
        for i in range(0, len(seen), BATCH):
            self.client().change_message_visibility_batch(
                QueueUrl=self.dlq_url,
                Entries=[
                    {"Id": str(j), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                    for j, m in enumerate(list(seen.values())[i : i + BATCH])
                ],
            )
        return list(seen.values())

    def dead_letter_count(self) -> int:
        """The dead-letter queue's approximate size (visible and in flight)."""
        return self._count(self.dlq_url)

    def approximate_depth(self) -> int:
        """The queue's approximate size (visible and in flight)."""
        return self._count(self.queue_url)

    def _count(self, url: str) -> int:
        attributes = self.client().get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return sum(int(v) for v in attributes.values())
