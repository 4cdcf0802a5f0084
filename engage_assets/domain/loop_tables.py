"""The "close the loop" tables beside the platform's history (`engage_assets.domain.history`): what the providers
reported about the touches (`outcomes`) and what the business's systems recorded (`conversions`).  Pure: no I/O.

- **outcomes**: the outcome store's records (`resources.outcomes`), one row per provider event joined to its touch,
  with the store's kinds named as the warehouse names them (`EVENT_TYPES`: opened → open, bounced → bounce …).  The
  kinds the warehouse does not count (sent, delayed, subscribed) and the outcomes kept aside for an unknown touch
  are not exported (`outcome_rows` counts them).  `simulated` is true for what the response simulator recorded
  (its provider is `SIMULATOR`).  Written per day of `occurred_at` by the `outcomes_export` asset; a re-run
  replaces the day.
- **conversions**: orders placed, subscriptions reactivated, codes and credits redeemed, call-task outcomes, carts
  purchased.  In production a warehouse table the business's loaders fill (dbt vars `conversions_schema`,
  `conversions_table`); locally the response simulator plays those systems and writes Parquet files of this shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

OUTCOMES, CONVERSIONS = "outcomes", "conversions"
SIMULATOR = "simulator"  # the provider name of every outcome the response simulator records

# outcome store kind -> the warehouse's event_type
EVENT_TYPES = {
    "delivered": "delivered",
    "opened": "open",
    "clicked": "click",
    "bounced": "bounce",
    "complained": "complaint",
    "unsubscribed": "unsubscribe",
    "failed": "failed",
    "rejected": "failed",
}

CONVERSION_TYPES = (
    "order_placed",
    "subscription_reactivated",
    "code_redeemed",
    "credit_redeemed",
    "call_task_completed",
    "cart_purchased",
)

OUTCOME_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("touch_ref", pa.string()),
        ("program_id", pa.string()),
        ("customer_id", pa.string()),
        ("channel", pa.string()),
        ("event_type", pa.string()),
        ("occurred_at", pa.timestamp("us")),
        ("provider_id", pa.string()),
        ("simulated", pa.bool_()),
        ("loaded_at", pa.timestamp("us")),
    ]
)

CONVERSION_SCHEMA = pa.schema(
    [
        ("conversion_id", pa.string()),
        ("customer_id", pa.string()),
        ("conversion_type", pa.string()),
        ("occurred_at", pa.timestamp("us")),
        ("value_usd", pa.float64()),
        ("order_id", pa.string()),
        ("offer_code", pa.string()),
        ("program_id", pa.string()),
        ("simulated", pa.bool_()),
        ("loaded_at", pa.timestamp("us")),
    ]
)


def naive_utc(epoch_seconds: float) -> datetime:
    """Epoch seconds as a naive UTC datetime (what the warehouse's timestamp columns hold)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).replace(tzinfo=None)


def outcome_rows(records: Iterable[Mapping[str, Any]], loaded_at: datetime) -> tuple[pa.Table, dict[str, int]]:
    """The exported rows of outcome store records (`resources.outcomes.base.outcome_item`), and how many were left
    out and why (`unmatched`: kept aside for an unknown touch; `kind:<kind>`: a kind the warehouse does not count)."""
    rows: list[dict[str, Any]] = []
    left_out: dict[str, int] = {}
    loaded = loaded_at.astimezone(UTC).replace(tzinfo=None) if loaded_at.tzinfo else loaded_at
    for r in records:
        event_type = EVENT_TYPES.get(r["kind"])
        reason = "unmatched" if not r.get("touchRef") else None if event_type else f"kind:{r['kind']}"
        if reason:
            left_out[reason] = left_out.get(reason, 0) + 1
            continue
        rows.append(
            {
                "event_id": r["eventId"],
                "touch_ref": r["touchRef"],
                "program_id": r["programId"],
                "customer_id": r["customerId"],
                "channel": r["channel"],
                "event_type": event_type,
                "occurred_at": naive_utc(int(r["occurredAt"])),
                "provider_id": r["providerId"],
                "simulated": r["provider"] == SIMULATOR,
                "loaded_at": loaded,
            }
        )
    return pa.Table.from_pylist(rows, schema=OUTCOME_SCHEMA), left_out


def check_conversions(table: pa.Table) -> pa.Table:
    """The table as CONVERSION_SCHEMA, or ValueError naming the first unknown conversion type."""
    unknown = sorted(set(table.column("conversion_type").to_pylist()) - set(CONVERSION_TYPES))
    if unknown:
        raise ValueError(f"unknown conversion_type {unknown[0]!r}; one of {', '.join(CONVERSION_TYPES)}")
    return table.select(CONVERSION_SCHEMA.names).cast(CONVERSION_SCHEMA)
