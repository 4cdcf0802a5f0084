"""Test doubles for delivery tests: a touch-plan builder, a customer-state stand-in and a renderer stand-in.

They follow the planning module's contracts (plan_touches' columns, CustomerState.recheck/contacts,
TemplateRenderer.render) so the engine is tested on its own; the end-to-end test uses the real ones.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from resources.delivery_ledger.base import PLAN_COLUMNS


def plan_table(program_id: str, partition_key: str, rows: list[dict[str, Any]]) -> pa.Table:
    """A touch plan in plan_touches' schema; each row needs customerId and channel, the rest has defaults."""
    out = []
    for _i, r in enumerate(rows):
        cust, channel = r["customerId"], r["channel"]
        subject = r.get("subjectId", f"s-{cust}")
        touch = r.get("touchId", "t1")
        full = {
            "touchKey": f"{program_id}#{cust}#{subject}#{touch}#{r.get('channelId', channel)}",
            "programId": program_id,
            "partitionKey": partition_key,
            "customerId": cust,
            "subjectId": subject,
            "touchId": touch,
            "channel": channel,
            "channelId": r.get("channelId", channel),
            "templateId": r.get("templateId", "tpl-v1"),
            "dueAt": r.get("dueAt", 1_000),
            "expiresAt": r.get("expiresAt", 10**10),
            "conditions": json.dumps(r.get("conditions", [])),
            "segment": r.get("segment", "high"),
            "offerType": "premium",
            "offer": json.dumps({"discount": 50}),
            "holdout": r.get("holdout", False),
            "marketplace": "US",
            "timeZone": r.get("timeZone", "UTC"),
            "currency": "USD",
            "score": float(r.get("score", 0.9)),
        }
        out.append(full)
    return pa.Table.from_pylist(
        out,
        schema=pa.schema(
            [
                (
                    c,
                    pa.int64()
                    if c in ("dueAt", "expiresAt")
                    else pa.bool_()
                    if c == "holdout"
                    else pa.float64()
                    if c == "score"
                    else pa.string(),
                )
                for c in PLAN_COLUMNS
            ]
        ),
    )


def contact(cust: str, **over: Any) -> dict[str, Any]:
    return {
        "customer_id": cust,
        "customer_name": f"Name {cust}",
        "email": f"{cust}@example.com",
        "phone": "+15550000" + cust[-3:].rjust(3, "0") if cust[-3:].isdigit() else "+15550000000",
        "marketplace": "US",
        "time_zone": "UTC",
        "email_opt_in": True,
        "sms_opt_in": True,
        "push_opt_in": True,
        "phone_opt_in": True,
        "marketing_opt_out": False,
    } | over


class FakeCustomerState:
    """contacts from a dict; recheck answers from `reasons` {touchKey or customerId: reason}."""

    def __init__(self, contacts: dict[str, dict[str, Any]], reasons: dict[str, str] | None = None):
        self._contacts = contacts
        self.reasons = reasons or {}

    def contacts(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        return {c: self._contacts[c] for c in customer_ids if c in self._contacts}

    def recheck(self, touch: dict[str, Any], now: datetime) -> str | None:
        return self.reasons.get(touch["touchKey"]) or self.reasons.get(touch["customerId"])


@dataclass
class Rendered:
    subject: str | None
    text: str
    html: str | None


class FakeTemplateError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class FakeRenderer:
    """Subject and body from the contact's name; a template id of "broken" raises a template error."""

    def render(self, touch: dict[str, Any], contact: dict[str, Any]) -> Rendered:
        if touch["templateId"] == "broken":
            raise FakeTemplateError("missing_field:discountCode")
        name = contact["customer_name"]
        return Rendered(
            f"Offer for {name}",
            f"Hi {name},\nyour offer: {touch['offer']}\n",
            f"<p>Hi {name}</p>" if touch["channel"] == "email" else None,
        )


def outbox_count(root: Path, channel: str = "sms") -> int:
    """How many messages the outbox under `root` received on the channel (0 before its first)."""
    path = root / f"{channel}.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as c:
        return c.execute("SELECT count(*) FROM messages").fetchone()[0]
