"""Event ingest: `POST /v1/events` (PutEvents over HTTP, `ingest` scope) and `engage events put|stats`, into a
LocalEventQueue; what goes in is the envelope an EventBridge target receives, and `parse_event` accepts it."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from engage_assets.cli import main
from engage_assets.domain.events import ParsedEvent, parse_event
from engage_assets.serving.app import create_app
from engage_assets.serving.auth import create_api_key
from resources.engagement.sqlite import SqliteEngagementStore
from resources.events.base import SendResult
from resources.events.local import LocalEventQueue
from resources.store.sqlite import SqliteCandidateStore
from tests.test_serving import NOW, Clock

SECRET = "cust-4711-secret"  # a customer id that must never reach a log or an error message


def abandoned(customer: str = SECRET, **detail_changes) -> dict:
    detail = {
        "customerId": customer,
        "cartId": "cart-1",
        "cartValue": 150.5,
        "itemCount": 1,
        "items": [{"id": "sku-1", "name": "Lamp", "price": 150.5}],
        "timestamp": "2024-05-01T12:00:00Z",
    } | detail_changes
    return {"Source": "shop.cart", "DetailType": "CartAbandoned", "Detail": json.dumps(detail)}


def purchased() -> dict:
    detail = {
        "customerId": SECRET,
        "cartId": "cart-1",
        "orderId": "o-1",
        "value": 150.5,
        "timestamp": "2024-05-01T13:00:00Z",
    }
    return {
        "Source": "shop.cart",
        "DetailType": "CartPurchased",
        "Detail": json.dumps(detail),
        "Time": "2024-05-01T13:00:01Z",
    }


def inventory() -> dict:
    detail = {"productId": "sku-1", "inStock": False, "timestamp": "2024-05-01T14:00:00+02:00"}
    return {
        "Source": "shop.inventory",
        "DetailType": "InventoryChanged",
        "Detail": json.dumps(detail),
        "Resources": ["arn:x"],
    }


class Ingest:
    def __init__(self, client: TestClient, keys: dict[str, str], queue: LocalEventQueue) -> None:
        self.client, self.keys, self.queue = client, keys, queue

    def post(self, entries: list[dict] | None = None, key: str | None = "ingest", **kwargs):
        headers = {"X-API-Key": self.keys[key]} if key else {}
        if entries is not None:
            kwargs["json"] = {"Entries": entries}
        return self.client.post("/v1/events", headers=headers, **kwargs)

    def bodies(self) -> list[str]:
        return [m.body for m in self.queue.receive(100)]


def build(tmp_path, events: LocalEventQueue | None):
    engagement = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    candidates = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    keys = {
        name: create_api_key(engagement, scopes, name, rate_per_second=10_000, burst=10_000)[1]
        for name, scopes in {"ingest": ["ingest"], "reader": ["read:*"], "admin": ["admin"]}.items()
    }
    return create_app(candidates, engagement, clock=Clock(), events=events), keys


@pytest.fixture
def api(tmp_path):
    queue = LocalEventQueue(path=str(tmp_path / "events.sqlite"))
    app, keys = build(tmp_path, queue)
    with TestClient(app) as client:
        yield Ingest(client, keys, queue)


def test_a_valid_batch_lands_as_envelopes_parse_event_accepts(api):
    entries = [abandoned(), purchased(), inventory()]
    r = api.post(entries)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["FailedEntryCount"] == 0 and all(set(e) == {"EventId"} for e in body["Entries"])
    parsed = [parse_event(b) for b in api.bodies()]
    assert all(isinstance(p, ParsedEvent) for p in parsed)
    envelopes = [p.as_event() for p in parsed]  # type: ignore[union-attr]
    assert [e["id"] for e in envelopes] == [e["EventId"] for e in body["Entries"]]  # in order, the ids consumers see
    assert [e["detail-type"] for e in envelopes] == ["CartAbandoned", "CartPurchased", "InventoryChanged"]
    first, second, third = envelopes
    assert first["source"] == "shop.cart" and first["detail"]["customerId"] == SECRET and first["version"] == "0"
    assert first["time"] == datetime.fromtimestamp(NOW, UTC).isoformat().replace("+00:00", "Z")  # no Time: the clock
    assert second["time"] == "2024-05-01T13:00:01Z"  # the entry's Time
    assert third["resources"] == ["arn:x"] and third["detail"]["inStock"] is False


def test_per_entry_failures_mixed_with_successes(api, caplog):
    entries = [
        abandoned(),
        {"Source": "shop.cart", "DetailType": "CartAbandoned", "Detail": "not json"},
        {"Source": "shop.cart", "DetailType": "CartExploded", "Detail": json.dumps({"customerId": SECRET})},
        {"Source": "shop.cart", "DetailType": "CartAbandoned", "Detail": json.dumps({"customerId": SECRET})},
        abandoned(cartValue="150"),  # a string is not a cart value
        abandoned(customer="c2"),
    ]
    with caplog.at_level(logging.INFO, logger="engage.serving"):
        r = api.post(entries)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["FailedEntryCount"] == 4
    results = body["Entries"]
    assert "EventId" in results[0] and "EventId" in results[5]
    assert results[1] == {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    reasons = {i: results[i]["ErrorMessage"] for i in (2, 3, 4)}
    assert all(results[i]["ErrorCode"] == "InvalidArgument" for i in reasons)
    assert "unknown_detail_type" in reasons[2]
    assert "missing_field" in reasons[3] and "detail.cartId" in reasons[3]
    assert "wrong_type" in reasons[4] and "detail.cartValue" in reasons[4]
    queued = [parse_event(b) for b in api.bodies()]
    assert [p.envelope.id for p in queued] == [results[0]["EventId"], results[5]["EventId"]]  # type: ignore[union-attr]
    assert SECRET not in json.dumps(reasons)
    assert "accepted=2 failed=4" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize(
    "entries, reason",
    [
        ([abandoned()] * 11, "less than or equal to 10"),
        ([abandoned(note="x" * 140_000), abandoned(note="y" * 140_000)], "over the limit"),
        ([], "greater than or equal to 1"),
    ],
    ids=["11-entries", "over-256-KiB", "no-entries"],
)
def test_a_request_over_the_limits_is_400_and_enqueues_nothing(api, entries, reason):
    r = api.post(entries)
    assert r.status_code == 400 and reason in r.json()["detail"], r.text
    assert api.queue.approximate_depth() == 0


def test_keys_and_scopes(api):
    assert api.post([abandoned()], key=None).status_code == 401
    r = api.post([abandoned()], key="reader")
    assert r.status_code == 403 and "'ingest' scope" in r.json()["detail"]
    assert api.post([abandoned()], key="admin").status_code == 403
    assert api.queue.approximate_depth() == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content": b'{"Entries": [', "headers_extra": {"Content-Type": "application/json"}},
        {"json": {"entries": []}},  # not the PutEvents shape
        {"json": {"Entries": [{"Source": "s", "DetailType": "CartAbandoned", "Detail": {"not": "text"}}]}},
        {"json": {"Entries": [abandoned() | {"Unknown": 1}]}},
        # The schema says date-time text: a number (epoch seconds? milliseconds?) is refused, not guessed
        {"json": {"Entries": [abandoned() | {"Time": 1714568401}]}},
    ],
    ids=["malformed-json", "wrong-shape", "detail-not-a-string", "unknown-field", "time-as-a-number"],
)
def test_a_body_that_is_not_a_put_events_request_is_422(api, kwargs):
    headers = {"X-API-Key": api.keys["ingest"], **kwargs.pop("headers_extra", {})}
    r = api.client.post("/v1/events", headers=headers, **kwargs)
    assert r.status_code == 422, r.text
    assert SECRET not in r.text  # the app's validation errors never echo input
    assert api.queue.approximate_depth() == 0


def test_not_configured_is_503(tmp_path):
    app, keys = build(tmp_path, None)
    with TestClient(app) as client:
        r = client.post("/v1/events", headers={"X-API-Key": keys["ingest"]}, json={"Entries": [abandoned()]})
    assert r.status_code == 503 and r.json()["detail"] == "event ingest not configured"


def test_queue_refusals_and_failures(api, monkeypatch, caplog):
    def refuse_second(self, bodies):
        return [SendResult(message_id="m0"), SendResult(message_id=None, error="Throttled")][: len(bodies)]

    monkeypatch.setattr(LocalEventQueue, "send", refuse_second)
    body = api.post([abandoned(), abandoned(customer="c2")]).json()
    assert body["FailedEntryCount"] == 1 and "EventId" in body["Entries"][0]
    assert body["Entries"][1]["ErrorCode"] == "InternalFailure" and "Throttled" in body["Entries"][1]["ErrorMessage"]

    def broken(self, bodies):
        raise OSError(f"disk full while writing {bodies[0]}")

    monkeypatch.setattr(LocalEventQueue, "send", broken)
    with caplog.at_level(logging.WARNING, logger="engage.serving"):
        r = api.post([abandoned()])
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "OSError" in caplog.text and SECRET not in caplog.text and SECRET not in r.text


def test_openapi_documents_the_route(api):
    spec = api.client.get("/openapi.json").json()
    op = spec["paths"]["/v1/events"]["post"]
    assert op["tags"] == ["events"]
    assert set(op["responses"]) == {"200", "400", "401", "403", "422", "429", "503"}
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PutEventsRequest")
    entries = spec["components"]["schemas"]["PutEventsRequest"]["properties"]["Entries"]
    assert (entries["minItems"], entries["maxItems"]) == (1, 10)
    assert set(spec["components"]["schemas"]["PutEventsEntry"]["required"]) == {"Source", "DetailType", "Detail"}


# -- the CLI ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    monkeypatch.delenv("ENGAGE_ENV", raising=False)
    return tmp_path


def engage(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    return int(exit_.value.code or 0)


def queued(home) -> list[ParsedEvent]:
    parsed = [parse_event(m.body) for m in LocalEventQueue(path=str(home / "events.sqlite")).receive(100)]
    assert all(isinstance(p, ParsedEvent) for p in parsed)
    return parsed  # type: ignore[return-value]


@pytest.mark.parametrize("shape", ["request", "list", "lines"])
def test_cli_put_from_a_file(home, capsys, shape):
    entries = [abandoned(), purchased(), inventory()]
    text = {
        "request": json.dumps({"Entries": entries}),
        "list": json.dumps(entries, indent=2),
        "lines": "\n".join(json.dumps(e) for e in entries) + "\n\n",
    }[shape]
    (home / "events.json").write_text(text)
    assert engage("events", "put", str(home / "events.json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["FailedEntryCount"] == 0
    assert [p.envelope.id for p in queued(home)] == [e["EventId"] for e in out["Entries"]]


def test_cli_put_from_stdin_batches_and_fails_per_entry(home, capsys, monkeypatch):
    entries = [abandoned(customer=f"c{i}") for i in range(12)] + [abandoned(cartValue=-1)]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(json.dumps(e) for e in entries)))
    assert engage("events", "put") == 1  # one entry failed
    out = json.loads(capsys.readouterr().out)
    assert out["FailedEntryCount"] == 1 and len(out["Entries"]) == 13  # two PutEvents batches: 10 + 3
    assert (
        out["Entries"][12]["ErrorCode"] == "InvalidArgument" and "invalid_value" in out["Entries"][12]["ErrorMessage"]
    )
    assert sorted(p.detail.customerId for p in queued(home)) == sorted(f"c{i}" for i in range(12))  # type: ignore[union-attr]
    assert engage("events", "stats") == 0
    assert json.loads(capsys.readouterr().out) == {"queueDepth": 12, "deadLetters": 0}  # received, not deleted


def test_cli_put_oversized_entry_and_bad_input(home, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps([abandoned(note="x" * 300_000), abandoned()])))
    assert engage("events", "put", "-") == 1
    out = json.loads(capsys.readouterr().out)
    assert out["Entries"][0]["ErrorCode"] == "ValidationException" and "EventId" in out["Entries"][1]
    for text, message in [
        ('{"Source": "a"}\nnot json\n', "line 2 is not JSON"),
        ("[1, 2]", "entry 0 is a JSON int"),
        ("", "expected PutEvents entries"),
    ]:
        monkeypatch.setattr("sys.stdin", io.StringIO(text))
        assert engage("events", "put") == 2
        assert message in capsys.readouterr().err
    assert engage("events", "put", str(home / "missing.json")) == 2
    assert engage("events", "stats") == 0
    assert json.loads(capsys.readouterr().out) == {"queueDepth": 1, "deadLetters": 0}
