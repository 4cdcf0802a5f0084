"""The event shapes: the EventBridge envelope, PutEvents entries and limits, the cart event details; `parse_event`
never raises on bad input, never echoes the payload in a rejection, and every accepted event round-trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage_assets.domain.config import ReactiveProgram, load_program
from engage_assets.domain.events.envelope import (
    MAX_DEPTH,
    MAX_ENTRIES,
    MAX_EVENT_BYTES,
    MAX_REQUEST_BYTES,
    CartAbandoned,
    CartPurchased,
    EventEnvelope,
    InventoryChanged,
    ParsedEvent,
    PutEventsEntry,
    PutEventsRequestError,
    Rejected,
    entry_size,
    parse_envelope,
    parse_event,
    put_events_response,
    validate_put_events,
)

CART = Path(__file__).resolve().parent / "fixtures" / "abandoned-cart-recovery.yaml"
EMAIL = "jane.doe@example.com"

# The spec's event (Reactive Data Flow, T+0ms), as the detail of an EventBridge envelope.
SPEC_DETAIL = {
    "customerId": "C456",
    "cartId": "CART-789",
    "cartValue": 150.00,
    "itemCount": 3,
    "items": [
        {"id": "P1", "name": "Wireless Headphones", "price": 79.99},
        {"id": "P2", "name": "Phone Case", "price": 29.99},
        {"id": "P3", "name": "Screen Protector", "price": 39.99},
    ],
    "abandonmentReason": "session_timeout",
    "timestamp": "2026-01-18T16:45:00Z",
}


def _envelope(detail_type: str = "CartAbandoned", detail: dict | None = None, **fields: object) -> dict:
    event = {
        "version": "0",
        "id": "5f1d9c1e-0000-4000-8000-000000000001",
        "detail-type": detail_type,
        "source": "ecommerce.cart",
        "account": "123456789012",
        "time": "2026-01-18T16:45:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": SPEC_DETAIL if detail is None else detail,
    }
    event.update(fields)
    return event


def _accepted(raw: object) -> ParsedEvent:
    result = parse_event(raw)  # type: ignore[arg-type]
    assert isinstance(result, ParsedEvent), result
    return result


def _rejected(raw: object) -> Rejected:
    result = parse_event(raw)  # type: ignore[arg-type]
    assert isinstance(result, Rejected), result
    return result


# --- Accepted events -------------------------------------------------------------------------------------------


def test_the_spec_cart_event_parses_from_bytes_text_and_a_mapping():
    event = _envelope()
    parsed = _accepted(json.dumps(event).encode())
    assert parsed == _accepted(json.dumps(event)) == _accepted(event)
    assert parsed.detail_type == "CartAbandoned"
    detail = parsed.detail
    assert isinstance(detail, CartAbandoned)
    assert detail.customerId == "C456" and detail.cartValue == 150.0 and detail.currency == "USD"
    assert [i.quantity for i in detail.items] == [1, 1, 1] and detail.items[0].inStock is None
    assert detail.timestamp == datetime(2026, 1, 18, 16, 45, tzinfo=UTC)
    assert parsed.envelope.time == datetime(2026, 1, 18, 16, 45, tzinfo=UTC)
    assert parsed.as_event()["detail-type"] == "CartAbandoned"


def test_the_other_cart_events_parse():
    purchased = _accepted(
        _envelope(
            "CartPurchased",
            {
                "customerId": "C456",
                "cartId": "CART-789",
                "orderId": "O-1",
                "value": 135,
                "timestamp": "2026-01-18T18:00:00+01:00",
            },
        )
    )
    assert isinstance(purchased.detail, CartPurchased) and purchased.detail.value == 135.0
    assert purchased.detail.timestamp.utcoffset() == timedelta(hours=1)
    inventory = _accepted(
        _envelope(
            "InventoryChanged",
            {"productId": "P1", "inStock": False, "timestamp": "2026-01-18T17:00:00Z"},
            source="ecommerce.inventory",
        )
    )
    assert isinstance(inventory.detail, InventoryChanged) and inventory.detail.inStock is False


def test_unknown_detail_fields_are_kept_in_the_envelope_and_ignored_by_the_model():
    parsed = _accepted(_envelope(detail={**SPEC_DETAIL, "marketplace": "UK", "utm": {"campaign": "x"}}))
    assert parsed.as_event()["detail"]["marketplace"] == "UK"
    assert not hasattr(parsed.detail, "marketplace")


def test_an_accepted_event_is_what_the_spec_programs_pattern_matches():
    program = load_program(CART)
    assert isinstance(program, ReactiveProgram)
    matcher = program.eventSources[0].config.matcher
    assert matcher.matches(_accepted(_envelope()).as_event())
    cheap = _accepted(_envelope(detail={**SPEC_DETAIL, "cartValue": 12.5}))
    assert not matcher.matches(cheap.as_event())
    purchased = {"customerId": "C", "cartId": "K", "orderId": "O", "value": 150, "timestamp": "2026-01-18T18:00:00Z"}
    assert not matcher.matches(_accepted(_envelope("CartPurchased", purchased)).as_event())


# --- Rejections ------------------------------------------------------------------------------------------------


def _detail_with(**changes: object) -> dict:
    detail = {**SPEC_DETAIL, **changes}
    return {k: v for k, v in detail.items() if v is not _DROP}


_DROP = object()


@pytest.mark.parametrize(
    "raw, reason, where",
    [
        (b"{", "malformed_json", "line 1"),
        (b"\xff\xfe\xfa", "malformed_json", ""),
        ('{"a": NaN}', "malformed_json", ""),
        ("", "malformed_json", ""),
        (b"[1, 2]", "not_an_object", "list"),
        ('"text"', "not_an_object", "str"),
        (5, "not_json", "int"),
        (None, "not_json", "NoneType"),
        ({"when": datetime(2026, 1, 1)}, "not_json", ""),
        ({"tags": {"a", "b"}}, "not_json", ""),
        ({"n": float("nan")}, "not_json", ""),
        ({k: v for k, v in _envelope().items() if k != "detail-type"}, "missing_field", "detail-type: missing"),
        (_envelope(time="2026-01-18T16:45:00"), "invalid_value", "time: timezone_aware"),
        (_envelope(resources="arn:x"), "wrong_type", "resources: list_type"),
        (_envelope(detail=[SPEC_DETAIL]), "wrong_type", "detail: dict_type"),
        (_envelope("CartShipped"), "unknown_detail_type", "detail-type is not one of"),
        (_envelope(detail=_detail_with(customerId=_DROP)), "missing_field", "detail.customerId: missing"),
        (_envelope(detail=_detail_with(cartValue="150")), "wrong_type", "detail.cartValue: float_type"),
        (_envelope(detail=_detail_with(cartValue=True)), "wrong_type", "detail.cartValue: float_type"),
        (_envelope(detail=_detail_with(cartValue=-1)), "invalid_value", "detail.cartValue: greater_than_equal"),
        (_envelope(detail=_detail_with(itemCount=3.0)), "wrong_type", "detail.itemCount: int_type"),
        (_envelope(detail=_detail_with(currency="usd")), "invalid_value", "detail.currency"),
        (_envelope(detail=_detail_with(customerId="")), "invalid_value", "detail.customerId: string_too_short"),
        (_envelope(detail=_detail_with(timestamp=1768754700)), "wrong_type", "detail.timestamp: datetime_type"),
        (_envelope(detail=_detail_with(timestamp="yesterday")), "invalid_value", "detail.timestamp"),
        (
            _envelope(detail=_detail_with(items=[{"id": "P1", "name": "x", "price": 1, "inStock": 1}])),
            "wrong_type",
            "detail.items.0.inStock: bool_type",
        ),
        (
            _envelope(detail=_detail_with(items=[{"id": "P1", "name": "x", "price": 1, "quantity": 0}])),
            "invalid_value",
            "detail.items.0.quantity",
        ),
        (
            _envelope("InventoryChanged", {"productId": "P1", "inStock": "yes", "timestamp": "2026-01-18T17:00:00Z"}),
            "wrong_type",
            "detail.inStock: bool_type",
        ),
    ],
)
def test_bad_input_is_rejected_with_a_short_reason(raw, reason, where):
    rejected = _rejected(raw)
    assert rejected.reason == reason, rejected
    assert where in rejected.detail, rejected


def test_several_errors_are_counted():
    rejected = _rejected(_envelope(detail=_detail_with(cartValue="x", itemCount="y")))
    assert rejected.reason == "wrong_type" and "(and 1 more)" in rejected.detail


def test_too_large_and_too_deep_payloads_are_rejected_before_validation():
    big = json.dumps(_envelope(detail={**SPEC_DETAIL, "pad": "x" * MAX_EVENT_BYTES}))
    assert _rejected(big).reason == "too_large"
    assert _rejected(big.encode()).reason == "too_large"
    deep: object = "leaf"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    assert _rejected(_envelope(detail={**SPEC_DETAIL, "deep": deep})).reason == "too_deep"
    assert _rejected("[" * 100_000 + "]" * 100_000).reason in {"malformed_json", "too_deep", "not_an_object"}


@pytest.mark.parametrize(
    "raw",
    [
        _envelope(detail=_detail_with(customerId=EMAIL, cartValue="150")),
        _envelope(detail=_detail_with(customerId=EMAIL, itemCount=None)),
        _envelope(detail=_detail_with(customerId=EMAIL, currency="€uro")),
        _envelope(detail=_detail_with(cartId=EMAIL, timestamp=EMAIL)),
        _envelope(detail=_detail_with(customerId=987654321)),
        _envelope(detail=_detail_with(items=[{"id": "P1", "name": EMAIL, "price": EMAIL}])),
        _envelope(EMAIL),
        _envelope(id=EMAIL, time=EMAIL),
        '{"customerId": "' + EMAIL + '", oops}',
        json.dumps(_envelope(detail=_detail_with(customerId=EMAIL, cartValue=-5))).encode(),
    ],
)
def test_a_rejection_never_carries_the_payloads_personal_data(raw):
    rejected = _rejected(raw)
    assert EMAIL not in rejected.detail and "jane" not in rejected.detail and "987654321" not in rejected.detail
    assert EMAIL not in repr(rejected)


# --- PutEvents -------------------------------------------------------------------------------------------------


def _entry(**fields: object) -> dict:
    entry: dict = {
        "Source": "ecommerce.cart",
        "DetailType": "CartAbandoned",
        "Detail": json.dumps(SPEC_DETAIL),
        "EventBusName": "ecommerce-platform",
    }
    entry.update(fields)
    return entry


def test_a_put_events_entry_becomes_the_delivered_envelope():
    received = datetime(2026, 1, 18, 16, 45, 3, tzinfo=UTC)
    entry = PutEventsEntry.model_validate(_entry(Resources=["arn:aws:cart/CART-789"]))
    envelope = entry.to_envelope(event_id="e-1", account="123456789012", region="us-east-1", received_at=received)
    assert envelope.time == received and envelope.version == "0" and envelope.resources == ["arn:aws:cart/CART-789"]
    assert envelope.detail == SPEC_DETAIL
    parsed = _accepted(envelope.model_dump_json(by_alias=True))
    assert parsed.envelope == envelope and isinstance(parsed.detail, CartAbandoned)
    timed = PutEventsEntry.model_validate(_entry(Time=datetime(2026, 1, 18, 16, 40)))  # naive: read as UTC
    env = timed.to_envelope(event_id="e-2", account="1", region="r", received_at=received)
    assert env.time == datetime(2026, 1, 18, 16, 40, tzinfo=UTC)
    with pytest.raises(ValueError, match="Detail is malformed"):
        PutEventsEntry.model_validate(_entry(Detail="[1]")).to_envelope(
            event_id="e", account="1", region="r", received_at=received
        )


def test_entry_size_counts_as_eventbridge_documents():
    entry = _entry(Source="é", DetailType="ab", Detail="{}", Resources=["xyz", "€"])
    assert entry_size(entry) == 2 + 2 + 2 + 3 + 3
    assert entry_size({**entry, "Time": datetime(2026, 1, 1, tzinfo=UTC)}) == 12 + 14
    assert PutEventsEntry.model_validate(entry).size() == 12
    assert entry_size({"Source": 5, "Resources": "x"}) == 0


def test_validate_put_events_answers_per_entry_in_the_response_shape():
    ids = iter(f"id-{i}" for i in range(10))
    results = validate_put_events(
        [
            _entry(),
            _entry(Source=""),
            {k: v for k, v in _entry().items() if k != "DetailType"},
            _entry(Detail="{not json"),
            _entry(Detail="[1, 2]"),
            _entry(Resources="arn"),
            _entry(Unknown=1),
            PutEventsEntry.model_validate(_entry()),
        ],
        new_event_id=lambda: next(ids),
    )
    shaped = [r.model_dump(exclude_none=True) for r in results]
    assert shaped[0] == {"EventId": "id-0"} and shaped[7] == {"EventId": "id-1"}
    assert shaped[1] == {
        "ErrorCode": "InvalidArgument",
        "ErrorMessage": "Parameter Source is not valid. Reason: Source is a required argument.",
    }
    assert shaped[2]["ErrorCode"] == "InvalidArgument" and "DetailType" in shaped[2]["ErrorMessage"]
    assert shaped[3] == shaped[4] == {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    assert shaped[5]["ErrorCode"] == "InvalidArgument" and "Resources" in shaped[5]["ErrorMessage"]
    assert shaped[6]["ErrorCode"] == "InvalidArgument" and "Unknown" in shaped[6]["ErrorMessage"]
    response = put_events_response(results)
    assert response["FailedEntryCount"] == 6 and response["Entries"] == shaped


def test_put_events_request_limits_fail_the_whole_request():
    assert len(validate_put_events([_entry()] * MAX_ENTRIES)) == MAX_ENTRIES
    with pytest.raises(PutEventsRequestError, match="less than or equal to 10"):
        validate_put_events([_entry()] * (MAX_ENTRIES + 1))
    with pytest.raises(PutEventsRequestError, match="greater than or equal to 1"):
        validate_put_events([])
    base = entry_size(_entry(Detail='{"pad":""}'))
    exactly = _entry(Detail=json.dumps({"pad": "x" * (MAX_REQUEST_BYTES - base)}, separators=(",", ":")))
    assert entry_size(exactly) == MAX_REQUEST_BYTES
    assert validate_put_events([exactly])[0].ok
    over = _entry(Detail=json.dumps({"pad": "x" * (MAX_REQUEST_BYTES - base + 1)}, separators=(",", ":")))
    with pytest.raises(PutEventsRequestError, match="over the limit") as exc:
        validate_put_events([over])
    assert exc.value.code == "ValidationException"
    half = _entry(Detail=json.dumps({"pad": "x" * (MAX_REQUEST_BYTES // 2)}))
    with pytest.raises(PutEventsRequestError):
        validate_put_events([half, half])


# --- Fuzz: never raises; accepted events round-trip -------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
ids = st.text(min_size=1, max_size=12)
stamps = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
).map(datetime.isoformat)
amounts = st.integers(min_value=0, max_value=10**12) | st.floats(min_value=0, max_value=1e12, allow_nan=False)
items = st.fixed_dictionaries(
    {"id": ids, "name": st.text(max_size=12), "price": amounts},
    optional={"quantity": st.integers(min_value=1, max_value=99), "inStock": st.booleans(), "sku": json_values},
)
details = {
    "CartAbandoned": st.fixed_dictionaries(
        {
            "customerId": ids,
            "cartId": ids,
            "cartValue": amounts,
            "itemCount": st.integers(min_value=0, max_value=50),
            "items": st.lists(items, max_size=3),
            "timestamp": stamps,
        },
        optional={
            "currency": st.sampled_from(["USD", "GBP", "EUR"]),
            "abandonmentReason": st.none() | st.text(max_size=10),
            "extra": json_values,
        },
    ),
    "CartPurchased": st.fixed_dictionaries(
        {"customerId": ids, "cartId": ids, "orderId": ids, "value": amounts, "timestamp": stamps},
        optional={"currency": st.text(max_size=3)},
    ),
    "InventoryChanged": st.fixed_dictionaries({"productId": ids, "inStock": st.booleans(), "timestamp": stamps}),
}


@st.composite
def envelopes(draw: st.DrawFn) -> dict:
    """Well-formed envelopes of every detail type (and an unknown one), one in three with a field broken."""
    detail_type = draw(st.sampled_from([*details, "Unknown"]))
    detail = draw(details.get(detail_type, st.dictionaries(st.text(), json_values, max_size=3)))
    event = _envelope(
        detail_type, detail, id=draw(ids), time=draw(stamps), resources=draw(st.lists(st.text(), max_size=2))
    )
    if draw(st.integers(min_value=0, max_value=2)) == 0:
        target = draw(st.sampled_from([t for t in (event, detail) if t]))
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(json_values)
    return event


@FUZZ
@given(st.binary(max_size=512))
def test_parse_event_never_raises_on_arbitrary_bytes(raw):
    assert isinstance(parse_event(raw), ParsedEvent | Rejected)


@FUZZ
@given(st.text(max_size=512))
def test_parse_event_never_raises_on_arbitrary_text(raw):
    assert isinstance(parse_event(raw), ParsedEvent | Rejected)


@FUZZ
@given(json_values)
def test_parse_event_never_raises_on_arbitrary_json(value):
    assert isinstance(parse_event(json.dumps(value)), ParsedEvent | Rejected)
    if isinstance(value, dict):
        assert isinstance(parse_event(value), ParsedEvent | Rejected)


def _round_trips(parsed: ParsedEvent) -> None:
    text = parsed.to_json()
    assert parse_event(text) == parsed
    assert parse_event(text.encode()) == parsed
    assert parse_event(parsed.as_event()) == parsed
    assert json.loads(text) == parsed.as_event()


@FUZZ
@given(envelopes())
def test_every_accepted_event_round_trips(event):
    result = parse_event(event)
    assert isinstance(result, ParsedEvent | Rejected)
    assert parse_event(json.dumps(event)) == result
    if isinstance(result, ParsedEvent):
        _round_trips(result)
        assert isinstance(result.detail, (CartAbandoned, CartPurchased, InventoryChanged))
        assert result.envelope == EventEnvelope.model_validate(event)
    else:
        assert result.reason in {"missing_field", "wrong_type", "invalid_value", "unknown_detail_type", "too_deep"}


@FUZZ
@given(st.sampled_from(sorted(details)).flatmap(lambda t: st.tuples(st.just(t), details[t])))
def test_well_formed_cart_events_are_accepted_and_round_trip(typed_detail):
    detail_type, detail = typed_detail
    _round_trips(_accepted(_envelope(detail_type, detail)))


@FUZZ
@given(envelopes())
def test_parse_envelope_answers_as_parse_event_on_the_envelopes_json(event):
    try:
        envelope = EventEnvelope.model_validate(event)
    except ValueError:
        return  # the ingest path only ever hands parse_envelope a valid envelope
    assert parse_envelope(envelope) == parse_event(envelope.model_dump_json(by_alias=True))


def test_parse_envelope_refuses_a_too_deep_detail_as_parse_event_does():
    for levels in (MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH):
        nested: dict = {}
        for _ in range(levels - 1):
            nested = {"x": nested}
        envelope = EventEnvelope.model_validate(_envelope("InventoryChanged", nested))  # detail nests `levels` deep
        expected = parse_event(envelope.model_dump_json(by_alias=True))
        assert parse_envelope(envelope) == expected
        assert isinstance(expected, Rejected) and expected.reason == (
            "too_deep" if levels >= MAX_DEPTH else "missing_field"
        )
