"""Events for reactive programs, pure logic (no I/O): EventBridge event patterns (`patterns`, with the content
filters in `operators`) and the event shapes (`envelope`: the EventBridge envelope, PutEvents entries and limits, the
cart event details, `parse_event`)."""

from engage_assets.domain.events.envelope import (
    CartAbandoned,
    CartItem,
    CartPurchased,
    CheckedEntry,
    EventEnvelope,
    InventoryChanged,
    ParsedEvent,
    PutEventsEntry,
    PutEventsRequestError,
    PutEventsResultEntry,
    Rejected,
    check_put_events,
    entry_size,
    parse_envelope,
    parse_event,
    put_events_response,
    validate_put_events,
)
from engage_assets.domain.events.operators import PatternError
from engage_assets.domain.events.patterns import EventPattern, compile_pattern, normalize_pattern

__all__ = [
    "CartAbandoned",
    "CartItem",
    "CartPurchased",
    "CheckedEntry",
    "EventEnvelope",
    "EventPattern",
    "InventoryChanged",
    "ParsedEvent",
    "PatternError",
    "PutEventsEntry",
    "PutEventsRequestError",
    "PutEventsResultEntry",
    "Rejected",
    "check_put_events",
    "compile_pattern",
    "entry_size",
    "normalize_pattern",
    "parse_envelope",
    "parse_event",
    "put_events_response",
    "validate_put_events",
]
