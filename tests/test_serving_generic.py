"""The generic candidate pages (#12, item 3): a program with no route of its own is served by segment or by offer
type, and win-back by churn reason and date (GSI5), on both store backends, through FastAPI and the fast path alike."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from engage_assets.serving.app import create_app
from engage_assets.serving.auth import create_api_key
from resources.engagement.sqlite import SqliteEngagementStore
from resources.store.sqlite import SqliteCandidateStore
from tests.test_engagement_store import make_dynamo
from tests.test_store_contract import make_dynamodb, rec

NOW = 1_700_000_000
NEW, WINBACK = "late-delivery-apology", "win-back-campaigns"  # NEW: a program no route names
PROGRAMS = [NEW, WINBACK, "proactive-refunds"]
GENERIC = f"/v1/programs/{NEW}/candidates"
BY_CHURN = f"/v1/programs/{WINBACK}/candidates/by-churn-reason"


def seed(candidates: Any) -> None:
    """NEW: 12 candidates over two segments and two offer types, one expired, one held out; WINBACK: churn reasons
    over two monthly partitions."""
    new = [
        rec(f"n{i:02d}", program=NEW, segment=["gold", "silver"][i % 2], offer_type=["voucher", "credit"][i % 3 == 0],
            score=round(0.2 + i / 20, 2))
        for i in range(12)
    ] + [
        rec("nx", program=NEW, segment="gold", offer_type="voucher", score=0.99, expires_at=NOW + 100),
        rec("nh", program=NEW, segment="gold", offer_type="voucher", score=0.98, holdout=True),
    ]  # fmt: skip
    candidates.replace_partition(NEW, "2024-01-01", new, now=NOW)
    for partition, rows in {
        "2023-12-01": [("w1", "price", 0.9), ("w2", "features", 0.8), ("w3", "price", 0.4)],
        "2024-01-01": [("w4", "price", 0.5), ("w5", "price", 0.7), ("w6", "moved", 0.95)],
    }.items():
        records = [
            rec(c, program=WINBACK, partition=partition, segment="premium", offer_type="50pct", score=s,
                context={"churn_reason": reason, "churn_date": "2023-10-01"})
            for c, reason, s in rows
        ]  # fmt: skip
        records.append(
            rec("wh", program=WINBACK, partition=partition, score=0.99, holdout=True, context={"churn_reason": "price"})
        )
        candidates.replace_partition(WINBACK, partition, records, now=NOW)


def make_keys(engagement: Any) -> dict[str, str]:
    scopes = {"reader": ["read:*"], "new": [f"read:{NEW}"], "refunds": ["read:proactive-refunds"], "agent": ["agent"]}
    return {n: create_api_key(engagement, s, n, rate_per_second=10_000, burst=10_000)[1] for n, s in scopes.items()}


class Api:
    def __init__(self, client: TestClient, keys: dict[str, str], clock: list[float]) -> None:
        self.client, self.keys, self.clock = client, keys, clock

    def get(self, path: str, key: str = "reader", **params: Any) -> Any:
        return self.client.get(path, params=params, headers={"X-API-Key": self.keys[key]})


@pytest.fixture(params=["sqlite", "dynamodb"])
def api(request, tmp_path):
    if request.param == "sqlite":
        candidates: Any = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
        engagement: Any = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        candidates, engagement = make_dynamodb(endpoint), make_dynamo(endpoint)
    seed(candidates)
    clock = [float(NOW)]
    app = create_app(candidates, engagement, programs=PROGRAMS, clock=lambda: clock[0])
    with TestClient(app) as client:
        yield Api(client, make_keys(engagement), clock)


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["customerId"] for c in response.json()["items"]]


def drain(api: Api, path: str, **params: Any) -> list[str]:
    got: list[str] = []
    cursor = None
    for _ in range(50):
        r = api.get(path, **params, **({"cursor": cursor} if cursor else {}))
        got += ids(r)
        cursor = r.json()["nextCursor"]
        if cursor is None:
            return got
    raise AssertionError("pagination did not end")


def expected(segment: str | None = None, offer: str | None = None, min_score: float = 0.0) -> list[str]:
    rows = [(f"n{i:02d}", ["gold", "silver"][i % 2], ["voucher", "credit"][i % 3 == 0], round(0.2 + i / 20, 2))
            for i in range(12)]  # fmt: skip
    keep = [r for r in rows if segment in (None, r[1]) and offer in (None, r[2]) and r[3] >= min_score]
    return [r[0] for r in sorted(keep, key=lambda r: (r[3], r[0]), reverse=True)]


def test_a_program_without_a_route_is_served_by_segment_or_offer_type(api):
    assert drain(api, GENERIC, segment="gold", limit=2) == ["nx", *expected(segment="gold")]
    assert drain(api, GENERIC, offerType="voucher", limit=3) == ["nx", *expected(offer="voucher")]
    assert ids(api.get(GENERIC, segment="silver", minScore=0.5)) == expected(segment="silver", min_score=0.5)
    assert ids(api.get(GENERIC, offerType="credit", minScore=0.5, limit=1)) == expected(offer="credit")[:1]
    assert ids(api.get(GENERIC, segment="bronze")) == []
    api.clock[0] = NOW + 200  # expired: gone; the holdout never appears
    assert ids(api.get(GENERIC, segment="gold", limit=200)) == expected(segment="gold")
    assert ids(api.get(GENERIC, offerType="voucher", limit=200)) == expected(offer="voucher")
    assert ids(api.get(GENERIC, offerType="voucher", key="new", limit=1)) == expected(offer="voucher")[:1]


def test_generic_page_needs_exactly_one_of_segment_and_offer_type(api):
    for params in ({}, {"segment": "gold", "offerType": "voucher"}, {"minScore": 0.5}):
        r = api.get(GENERIC, **params)
        assert r.status_code == 400 and r.json() == {"detail": "give exactly one of segment and offerType"}, r.text
    cursor = api.get(GENERIC, segment="gold", limit=1).json()["nextCursor"]
    assert api.get(GENERIC, offerType="voucher", cursor=cursor).status_code == 400  # another query's cursor
    assert api.get(GENERIC, segment="gold", cursor="bm90LWEtY3Vyc29y").status_code == 400
    assert api.get(GENERIC, segment="bad segment").status_code == 422
    assert api.get(GENERIC, segment="gold", minscore=0.5).status_code == 422  # a misspelt parameter


@pytest.mark.parametrize("path, params", [(GENERIC, {"segment": "gold"}), (BY_CHURN, {"churnReason": "price"})])
def test_new_routes_authorize_as_the_program_routes(api, path, params):
    assert api.get(path, key="refunds", **params).status_code == 403
    assert "scope" in api.get(path, key="agent", **params).json()["detail"]
    assert api.client.get(path, params=params).status_code == 401
    unknown = path.replace(NEW, "no-such-program").replace(WINBACK, "no-such-program")
    assert api.get(unknown, **params).status_code == 404
    assert api.get(path, key="new", **params).status_code == (200 if NEW in path else 403)
    assert api.get(path, **params).status_code == 200


def test_by_churn_reason_newest_partition_first_since_and_min_score(api):
    assert drain(api, BY_CHURN, churnReason="price", limit=1) == ["w5", "w4", "w1", "w3"]  # never "wh" (holdout)
    assert ids(api.get(BY_CHURN, churnReason="price", since="2024-01-01")) == ["w5", "w4"]
    assert ids(api.get(BY_CHURN, churnReason="price", since="2023-12-02")) == ["w5", "w4"]
    assert ids(api.get(BY_CHURN, churnReason="price", minScore=0.6)) == ["w5", "w1"]
    assert ids(api.get(BY_CHURN, churnReason="features")) == ["w2"]
    assert ids(api.get(BY_CHURN, churnReason="price", since="2024-02-01")) == []
    body = api.get(BY_CHURN, churnReason="moved").json()
    assert body["items"][0]["context"] == {"churn_reason": "moved", "churn_date": "2023-10-01"}
    for bad in ({"since": "2024-13-01"}, {"since": "yesterday"}, {"churnReason": "bad reason"}):
        assert api.get(BY_CHURN, **{"churnReason": "price", **bad}).status_code == 422
    assert api.get(BY_CHURN, since="2024-01-01").status_code == 422  # churnReason is required
    cursor = api.get(BY_CHURN, churnReason="price", limit=1).json()["nextCursor"]
    assert api.get(BY_CHURN, churnReason="features", cursor=cursor).status_code == 400
    api.clock[0] = NOW + 2 * 86_400  # every candidate expired
    assert ids(api.get(BY_CHURN, churnReason="price")) == []


def test_openapi_documents_the_new_routes(api):
    spec = api.client.get("/openapi.json").json()
    for path, params in {
        "/v1/programs/{program}/candidates": {"segment", "offerType", "minScore", "limit", "cursor"},
        "/v1/programs/{program}/candidates/by-churn-reason": {"churnReason", "since", "minScore", "limit", "cursor"},
    }.items():
        op = spec["paths"][path]["get"]
        assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == params
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/CandidatePage"}
        assert {"400", "401", "403", "404", "429"} <= set(op["responses"])
    generic = spec["paths"]["/v1/programs/{program}/candidates"]["get"]
    assert "segment and offerType" in generic["responses"]["400"]["description"]
    since = next(p for p in spec["paths"][BY_CHURN.replace(WINBACK, "{program}")]["get"]["parameters"]
                 if p["name"] == "since")  # fmt: skip
    assert {"type": "string", "format": "date"} in since["schema"]["anyOf"]


def test_fast_path_app_answers_the_new_routes_like_fastapi(tmp_path):
    candidates = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    engagement = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    seed(candidates)
    keys = make_keys(engagement)
    fast_app = create_app(candidates, engagement, programs=PROGRAMS, clock=lambda: float(NOW))
    slow_app = create_app(candidates, engagement, programs=PROGRAMS, clock=lambda: float(NOW), fast_paths=False)
    queries = [
        (GENERIC, "segment=gold&limit=2"),
        (GENERIC, "offerType=voucher&minScore=0.5"),
        (GENERIC, ""),
        (GENERIC, "segment=gold&offerType=voucher"),
        (GENERIC + "/", "segment=gold"),
        (BY_CHURN, "churnReason=price"),
        (BY_CHURN, "churnReason=price&since=2024-01-01&minScore=0.1&limit=1"),
        (BY_CHURN, "churnReason=price&since=2024-1-1"),
        (BY_CHURN, "since=2024-01-01"),
    ]
    with TestClient(fast_app) as fast, TestClient(slow_app) as slow:
        for path, query in queries:
            for key in ("reader", "refunds"):
                a = fast.get(f"{path}?{query}", headers={"X-API-Key": keys[key]})
                b = slow.get(f"{path}?{query}", headers={"X-API-Key": keys[key]})
                assert (a.status_code, a.content) == (b.status_code, b.content), (path, query, key)
