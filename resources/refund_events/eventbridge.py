"""Production: issuance events to an EventBridge bus (PutEvents), where the order and billing systems' rules pick
them up.  An entry PutEvents answers with an EventId is acknowledged; one answered with an ErrorCode (or a request
that raised after botocore's retries) is not, and stays `issued` for the next run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import Field, PrivateAttr

from resources.aws import AwsClientConfig
from resources.events.eventbridge import PUT_EVENTS_BATCH
from resources.refund_events.base import SOURCE, RefundEvent, RefundEventPublisher


class EventBridgeRefundPublisher(AwsClientConfig, RefundEventPublisher):
    """PutEvents of issuance events to `event_bus_name`, source `engage.refunds`, `Detail` the event (its
    `idempotencyKey` the ledger's issuance id)."""

    event_bus_name: str = Field(default="default", description="The EventBridge bus the events are put on.")

    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        """The boto3 EventBridge client, made on first use."""
        if self._client is None:
            self._client = self.aws_client("events")
        return self._client

    def entry(self, event: RefundEvent) -> dict[str, Any]:
        """The PutEvents entry of an event."""
        return {
            "EventBusName": self.event_bus_name,
            "Source": SOURCE,
            "DetailType": event.detail_type,
            "Detail": json.dumps(event.detail, sort_keys=True),
        }

    def publish(self, events: Sequence[RefundEvent]) -> set[str]:
        """PutEvents in batches of 10 (an issuance event is well under the request size); the ids of the entries
        answered without an ErrorCode (PutEvents answers in request order)."""
        acknowledged: set[str] = set()
        for start in range(0, len(events), PUT_EVENTS_BATCH):
            batch = events[start : start + PUT_EVENTS_BATCH]
            response = self.client().put_events(Entries=[self.entry(e) for e in batch])
            for event, answer in zip(batch, response["Entries"], strict=True):
                if answer.get("EventId") and not answer.get("ErrorCode"):
                    acknowledged.add(event.event_id)
        return acknowledged
