"""The event path's fast reads give what the plain ones give (#10, cart_events_per_s): `loads` (pydantic-core's JSON reader, `json`
for what it refuses) against `json.loads`; the bracket bound against the depth walk; the
ingest's one-pass check (`check_put_events`, the envelope built from the checked entry) against the entry read
afresh; the compact serialisation against `json.dumps`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage_assets.domain.events import ParsedEvent, Rejected, check_put_events, parse_event
from engage_assets.domain.events.json_text import MAX_DEPTH, loads, nesting_bound, nesting_depth
from engage_assets.serving.ingest import envelope_body, prepare
from tests.test_event_envelope import details, json_values

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _json_loads(text: str | bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


def _outcome(read: Any, text: str | bytes) -> tuple[str, str]:
    """('ok', the value as JSON text: -0.0, 1e300 and big integers told apart) or ('error', the exception type)."""
    try:
        value = read(text)
    except (ValueError, RecursionError) as e:
        return "error", "RecursionError" if isinstance(e, RecursionError) else "ValueError"
    return "ok", json.dumps(value)


big = st.integers(min_value=-(10**40), max_value=10**40)
numbers = big | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([2**63, 2**64, -(2**63) - 1])


@settings(parent=FUZZ)
@given(json_values | st.lists(numbers, max_size=4) | st.dictionaries(st.text(max_size=3), numbers, max_size=3))
def test_loads_reads_json_text_as_json_loads_does(value):
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert _outcome(loads, text) == _outcome(_json_loads, text)
        try:
            raw = text.encode()
        except UnicodeEncodeError:  # a lone surrogate written raw
            continue
        assert _outcome(loads, raw) == _outcome(_json_loads, raw)


@settings(parent=FUZZ)
@given(st.text(max_size=200) | st.binary(max_size=200).map(bytes))
def test_loads_refuses_what_json_loads_refuses(text):
    assert _outcome(loads, text) == _outcome(_json_loads, text)


@pytest.mark.parametrize(
    "text",
    ['{"a":NaN}', "[Infinity]", "-Infinity", "1e400", '"\\ud800"', "123456789012345678901234567890", '{"a":1,"a":2}'],
)
def test_loads_keeps_json_loads_answers_on_the_edges(text):
    assert _outcome(loads, text) == _outcome(_json_loads, text)


@settings(parent=FUZZ)
@given(json_values)
def test_the_bracket_count_bounds_the_nesting_depth(value):
    text = json.dumps(value)
    assert nesting_bound(text) >= nesting_depth(value)
    assert nesting_bound(text.encode()) == nesting_bound(text)


def test_a_deep_event_is_still_refused_and_a_shallow_one_with_many_brackets_accepted():
    deep = '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
    rejected = parse_event(deep)
    assert isinstance(rejected, Rejected) and rejected.reason == "too_deep"
    detail = {
        "productId": "{[" * MAX_DEPTH,  # many brackets, all inside a string: the depth walk decides
        "inStock": True,
        "timestamp": "2024-05-01T12:00:00Z",
    }
    event = {
        "version": "0",
        "id": "e-1",
        "detail-type": "InventoryChanged",
        "source": "shop",
        "account": "1",
        "time": "2024-05-01T12:00:00Z",
        "region": "r",
        "resources": [],
        "detail": detail,
    }
    assert isinstance(parse_event(json.dumps(event)), ParsedEvent)


entries = st.sampled_from(sorted(details)).flatmap(
    lambda t: st.builds(
        lambda d, with_time: (
            {"Source": "shop", "DetailType": t, "Detail": json.dumps(d)}
            | ({"Time": "2024-05-01T12:00:00Z"} if with_time else {})
        ),
        details[t] | st.dictionaries(st.text(max_size=4), json_values, max_size=3),
        st.booleans(),
    )
)


@settings(parent=FUZZ)
@given(st.lists(entries, min_size=1, max_size=10))
def test_the_envelope_from_a_checked_entry_is_the_one_from_the_entry_read_afresh(batch):
    checked = check_put_events(batch)
    for entry, c in zip(batch, checked, strict=True):
        if c.result.EventId is None:
            assert c.entry is None
            continue
        fast = envelope_body(c, "ev-1", NOW, "acct", "local")
        slow = envelope_body(entry, "ev-1", NOW, "acct", "local")
        assert fast == slow
        if isinstance(fast, str):
            assert parse_event(fast) == parse_event(json.loads(fast))
    answered = prepare(batch, NOW)
    assert [("EventId" in r) for r in answered.results] == [
        c.result.EventId is not None and isinstance(envelope_body(c, "x", NOW, "a", "r"), str) for c in checked
    ]


@settings(parent=FUZZ)
@given(st.sampled_from(sorted(details)).flatmap(lambda t: st.tuples(st.just(t), details[t])))
def test_the_compact_json_is_what_json_dumps_reads_back(typed):
    detail_type, detail = typed
    event = {
        "version": "0",
        "id": "e-1",
        "detail-type": detail_type,
        "source": "shop",
        "account": "1",
        "time": "2024-05-01T12:00:00+02:00",
        "region": "r",
        "resources": ["x"],
        "detail": detail | {"extra": "\ud800"} if detail_type == "CartPurchased" else detail,
    }
    parsed = parse_event(event)
    if not isinstance(parsed, ParsedEvent):
        return
    text = parsed.to_json()
    legacy = json.dumps(parsed.as_event(), separators=(",", ":"), allow_nan=False)
    assert json.loads(text) == json.loads(legacy)
    assert parse_event(text) == parsed


@settings(parent=FUZZ)
@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=40)),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_a_batch_file_reads_back_every_body_exactly(tmp_path_factory, lines):
    from resources.event_batches import BatchLine, EventBatchStore

    store = EventBatchStore(root=str(tmp_path_factory.mktemp("batches")))
    written = [BatchLine(m, b) for m, b in [*lines, ("surrogate", "\ud800 é 123456789012345678901234567890")]]
    batch_id = store.write("p", "2024-05-01-12:00", written)
    assert store.read("p", "2024-05-01-12:00", batch_id) == written
