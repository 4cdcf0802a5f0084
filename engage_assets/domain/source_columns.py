"""The columns a program's batch carries beyond what its source query returns, with their types.

A batch program's batch is its connector query's columns (`requiredColumns` declares the ones it relies on) plus what
the source stage adds (`engage_assets.domain.sources`): the customer's context from `marts.customers` (where the query
did not select it) and the look-back counts from `marts.offer_history`.  A reactive program's batch is one row per
abandoned cart: the event's fields and the context the event path joins on (`engage_assets.reactive.events` and
`.context`; `tests/test_filter_expression.py` checks this list against what that path really builds).

The config uses these to check an `expression` filter's columns and types when it loads (`domain.filter_expression`);
types are `ColumnType` names (`domain.config.common`).
"""

from __future__ import annotations

# Context the source stage adds from marts.customers (never PII: no name, e-mail or phone in the batch).
CONTEXT_COLUMN_TYPES: dict[str, str] = {
    "marketplace": "string",
    "time_zone": "string",
    "subscription_tier": "string",
    "account_status": "string",
    "lifetime_value_usd": "number",
    "order_frequency": "integer",
    "monthly_revenue_usd": "number",
    "satisfaction_history": "number",
    "complaint_history": "integer",
    "discount_sensitivity": "number",
    "marketing_opt_out": "boolean",
    "email_opt_in": "boolean",
    "sms_opt_in": "boolean",
    "push_opt_in": "boolean",
    "phone_opt_in": "boolean",
}
# Look-back counts relative to the partition's as-of date (`domain.sources`).
HISTORY_COLUMN_TYPES: dict[str, str] = {
    "days_since_program_offer": "integer",
    "program_offers_365d": "integer",
    "all_offers_91d": "integer",
}
CONTEXT_COLUMNS = tuple(CONTEXT_COLUMN_TYPES)
HISTORY_COLUMNS = tuple(HISTORY_COLUMN_TYPES)

# A reactive (cart) program's batch: the CartAbandoned event's fields, then its enrichment.
EVENT_BATCH_COLUMN_TYPES: dict[str, str] = {
    "event_id": "string",
    "customer_id": "string",
    "cart_id": "string",
    "cart_value_local": "number",
    "currency": "string",
    "item_count": "integer",
    "abandonment_reason": "string",
    "abandoned_at": "timestamp",
    "dedup_key": "string",
    "partition_key": "string",
    "known_customer": "boolean",
    "account_status": "string",
    "marketplace": "string",
    "time_zone": "string",
    "marketing_opt_out": "boolean",
    "payment_method_on_file": "boolean",
    "purchase_history": "number",
    "email_engagement": "number",
    "discount_sensitivity": "number",
    "cart_value": "number",
    "recovery_messages_7d": "integer",
    "all_items_in_stock": "boolean",
    "cart_active": "boolean",
    "days_since_program_offer": "integer",
}


def batch_column_types(required: dict[str, str]) -> dict[str, str]:
    """A batch program's batch: its connector's `requiredColumns`, then the columns the source stage adds (a
    context column the query already selects keeps the query's declared type)."""
    return {**CONTEXT_COLUMN_TYPES, **required, **HISTORY_COLUMN_TYPES}
