"""Send-time rules over one touch and one contact row: consent, closed accounts, refund announcements.

Pure functions; the resource that loads contacts and conversions and applies them is
`resources.customer_state.CustomerState`.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from engage_assets.domain.contacts import CHANNEL_CONSENT

CLOSED_STATES = ("closed", "fraud_review", "suspended")


def announces_refund(touch: dict[str, Any]) -> bool:
    """A refund program's touch: its offer names a refund type (full, partial, credit)."""
    offer = touch.get("offer") or {}
    if isinstance(offer, str):
        try:
            offer = json.loads(offer)
        except ValueError:
            return False
    return isinstance(offer, dict) and offer.get("refundType") is not None


def consent_reason(touch: dict[str, Any], contact: dict[str, Any]) -> str | None:
    """Why this contact may not receive this touch now, from the contact row alone (None: it may)."""
    status = contact.get("account_status")
    if status in CLOSED_STATES:
        return "account_closed"
    if contact.get("marketing_opt_out") is True:
        return "marketing_opt_out"
    consent = CHANNEL_CONSENT.get(touch.get("channel", ""))
    if consent and contact.get(consent) is False:
        return f"opted_out:{touch['channel']}"
    return None


def epoch(now: datetime) -> int:
    return int((now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp())


def plan_date(touch: dict[str, Any]) -> date:
    """The plan's as-of: conversions after it count. Daily/weekly/monthly partition keys are dates."""
    key = str(touch.get("partitionKey") or "")[:10]
    try:
        return date.fromisoformat(key)
    except ValueError:
        return datetime.fromtimestamp(int(touch.get("dueAt") or 0), UTC).date()
