"""Phone and in-app: call tasks and inbox entries in the engagement store the serving API reads.

The same classes serve locally and in production: the store passed in is SQLite locally, DynamoDB in production.
"""

from __future__ import annotations

import json
from typing import Any

from resources.channels.base import ChannelSession, OutboundMessage, PermanentSendError
from resources.engagement.base import EngagementStore


def _hours(spec: str | None, default_h: int) -> int:
    if not spec:
        return default_h
    n = int(spec[:-1])
    return n * 24 if spec.endswith("d") else n


def _offer(touch: dict[str, Any]) -> dict[str, Any]:
    offer = touch.get("offer")
    if isinstance(offer, str):
        try:
            offer = json.loads(offer)
        except ValueError:
            offer = {"text": offer}
    return offer if isinstance(offer, dict) else {}


class _StoreSession(ChannelSession):
    dedupes_by_key = True  # ids are the idempotency key; the store inserts each id once

    def __init__(self, store: EngagementStore):
        self.store = store


class CallTaskSession(_StoreSession):
    """Creates one call task per message, its id the idempotency key."""

    def send(self, message: OutboundMessage) -> str:
        """Create the call task (due by the end of the channel's `scheduleWithin` window); returns its id."""
        t, cfg = message.touch, message.channel_config
        due = int(t.get("dueAt") or message.now)
        task = {
            "taskId": message.idempotency_key,
            "customerId": message.customer_id,
            "programId": message.program_id,
            "segment": t.get("segment"),
            "scriptId": cfg.get("scriptId") or t.get("templateId"),
            "callType": cfg.get("callType", "account-manager"),
            "score": None if t.get("score") is None else float(t["score"]),
            "offer": _offer(t),
            # the call is due by the end of its window (scheduleWithin: 24h / 48h after the touch's send time)
            "dueAt": due + _hours(cfg.get("scheduleWithin"), 24) * 3600,
            "priority": int(round(float(t.get("score") or 0) * 1000)),
        }
        if self.store.create_call_task(task) or self.store.get_call_task(task["taskId"]) is not None:
            return task["taskId"]
        raise PermanentSendError("customer_deleted", suppress=True)

    def lookup(self, message: OutboundMessage) -> str | None:
        """The task id, if a call task with this key exists."""
        return message.idempotency_key if self.store.get_call_task(message.idempotency_key) else None


class InboxSession(_StoreSession):
    """Upserts one inbox entry per message, its id the idempotency key."""

    def send(self, message: OutboundMessage) -> str:
        """Write the inbox entry (shown for `displayDuration` days from the touch's due time); returns its id."""
        t, cfg = message.touch, message.channel_config
        start = max(int(t.get("dueAt") or message.now), 0)
        until = start + int(cfg.get("displayDuration") or 7) * 86_400
        entry = {
            "messageId": message.idempotency_key,
            "customerId": message.customer_id,
            "programId": message.program_id,
            "messageType": cfg.get("messageType", "offer"),
            "templateId": t.get("templateId"),
            "offer": _offer(t) | {"title": message.subject, "text": message.text},
            "score": None if t.get("score") is None else float(t["score"]),
            "displayFrom": start,
            "displayUntil": until,
        }
        if self.store.upsert_inbox_message(entry) or self.store.get_inbox_message(entry["messageId"]) is not None:
            return entry["messageId"]
        raise PermanentSendError("customer_deleted", suppress=True)

    def lookup(self, message: OutboundMessage) -> str | None:
        """The entry id, if an inbox entry with this key exists."""
        return message.idempotency_key if self.store.get_inbox_message(message.idempotency_key) else None


class CallTaskChannel:
    """Phone: a call task for account managers (served by the serving API's call-task routes)."""

    rate_per_s = 1_000.0
    burst = 1_000

    def __init__(self, store: EngagementStore):
        self.store = store

    def open(self) -> CallTaskSession:
        """A session writing call tasks to the store."""
        return CallTaskSession(self.store)


class InboxChannel:
    """In-app: an inbox entry shown for the channel's `displayDuration` days."""

    rate_per_s = 1_000.0
    burst = 1_000

    def __init__(self, store: EngagementStore):
        self.store = store

    def open(self) -> InboxSession:
        """A session writing inbox entries to the store."""
        return InboxSession(self.store)
