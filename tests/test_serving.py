"""The serving API over both backends (SQLite file; DynamoDB on moto's server): every route, scope and error case."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engage_assets.serving import ensure_demo_key
from engage_assets.serving.app import MAX_PAGE, create_app
from engage_assets.serving.auth import create_api_key
from engage_assets.serving.context import ServingContext, get_context
from engage_assets.serving.dependencies import reject_unknown_query
from engage_assets.settings import Settings
from resources.engagement.sqlite import SqliteEngagementStore
from resources.store.sqlite import SqliteCandidateStore
from tests.test_engagement_store import make_dynamo, message, task
from tests.test_store_contract import make_dynamodb, rec

NOW = 1_700_000_000
DAY = 86_400
REFUNDS, CHURN, WINBACK = "proactive-refunds", "churn-prevention", "win-back-campaigns"
PROGRAMS = [REFUNDS, CHURN, WINBACK]


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def seed(candidates) -> None:
    refunds = (
        [rec(f"h{i:02d}", program=REFUNDS, segment="high", offer_type="full", score=0.7 + i / 100) for i in range(25)]
        + [rec("hp", program=REFUNDS, segment="high", offer_type="partial", score=0.99)]
        + [rec("hx", program=REFUNDS, segment="high", offer_type="full", score=0.995, expires_at=NOW + 100)]
        + [rec(f"m{i}", program=REFUNDS, segment="medium", offer_type="partial", score=0.5) for i in range(3)]
    )
    candidates.replace_partition(REFUNDS, "2024-01-01", refunds, now=NOW)
    churn = [
        rec(
            f"k{i}",
            program=CHURN,
            segment=["critical", "high"][i % 2],
            offer_type=["premium", "standard"][i % 2],
            score=0.6 + i / 50,
        )
        for i in range(10)
    ] + [rec("h00", program=CHURN, segment="critical", offer_type="premium", score=0.81)]
    candidates.replace_partition(CHURN, "2024-01-01", churn, now=NOW)
    winback = [
        rec(
            f"w{i:02d}",
            program=WINBACK,
            segment=["premium", "standard"][i % 2],
            offer_type=["premium", "standard"][i % 2],
            score=0.3 + i / 40,
        )
        for i in range(20)
    ]
    candidates.replace_partition(WINBACK, "2024-01-01", winback, now=NOW)


@pytest.fixture(params=["sqlite", "dynamodb"])
def api(request, tmp_path):
    if request.param == "sqlite":
        candidates = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
        engagement = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        candidates, engagement = make_dynamodb(endpoint), make_dynamo(endpoint)
    seed(candidates)
    clock = Clock()
    erased: list[str] = []
    app = create_app(
        candidates, engagement, programs=PROGRAMS, clock=clock, erasers={"eventQueue": lambda c: erased.append(c) or 1}
    )
    keys = {}
    for name, scopes in {
        "reader": ["read:*"],
        "refunds": [f"read:{REFUNDS}"],
        "agent": ["agent"],
        "agent2": ["agent"],
        "inapp": ["inapp"],
        "admin": ["admin"],
        "ingest": ["ingest"],
    }.items():
        keys[name] = create_api_key(engagement, scopes, name, rate_per_second=10_000, burst=10_000)[1]
    with TestClient(app) as client:
        yield Api(client, keys, candidates, engagement, clock, erased)


class Api:
    def __init__(self, client, keys, candidates, engagement, clock, erased):
        self.client, self.keys, self.candidates, self.engagement, self.clock = (
            client,
            keys,
            candidates,
            engagement,
            clock,
        )
        self.erased = erased

    def get(self, path: str, key: str | None = "reader", **params: Any):
        headers = {"X-API-Key": self.keys[key]} if key else {}
        return self.client.get(path, params=params, headers=headers)

    def post(self, path: str, key: str | None, json: Any = None):
        return self.client.post(path, json=json, headers={"X-API-Key": self.keys[key]} if key else {})

    def delete(self, path: str, key: str | None):
        return self.client.delete(path, headers={"X-API-Key": self.keys[key]} if key else {})


def customer_ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["customerId"] for c in response.json()["items"]]


def drain(api: Api, path: str, **params: Any) -> tuple[list[dict], list[int]]:
    items, sizes, cursor = [], [], None
    for _ in range(100):
        r = api.get(path, **params, **({"cursor": cursor} if cursor else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        sizes.append(len(body["items"]))
        cursor = body["nextCursor"]
        if cursor is None:
            return items, sizes
    raise AssertionError("pagination did not end")


BY_IMPACT = f"/v1/programs/{REFUNDS}/candidates/by-impact"
BY_SCORE = f"/v1/programs/{WINBACK}/candidates/by-score"
BY_RISK = f"/v1/programs/{CHURN}/candidates/by-risk-level"


# -- queries ---------------------------------------------------------------------------------------------------------


def test_by_impact_filters_refund_type_sorts_and_pages(api):
    items, sizes = drain(api, BY_IMPACT, impactLevel="high", refundType="full", limit=10)
    assert sizes == [10, 10, 6]
    ids = [c["customerId"] for c in items]
    assert ids[0] == "hx" and "hp" not in ids and len(ids) == len(set(ids)) == 26
    scores = [c["score"] for c in items]
    assert scores == sorted(scores, reverse=True)
    assert items[1] == rec("h24", program=REFUNDS, segment="high", offer_type="full", score=0.7 + 24 / 100)
    # Without refundType, the segment's other refund types come too; minScore bounds it.
    assert customer_ids(api.get(BY_IMPACT, impactLevel="high", minScore=0.98)) == ["hx", "hp"]
    assert customer_ids(api.get(BY_IMPACT, impactLevel="medium", refundType="partial")) == ["m2", "m1", "m0"]


def test_expired_candidates_are_never_returned(api):
    assert "hx" in customer_ids(api.get(BY_IMPACT, impactLevel="high", limit=3))
    api.clock.now = NOW + 100  # hx's expiresAt: expired from this second on
    assert "hx" not in customer_ids(api.get(BY_IMPACT, impactLevel="high", limit=200))
    assert "hx" not in customer_ids(api.get(f"/v1/programs/{REFUNDS}/candidates/by-score", offerType="full"))
    assert api.get("/v1/customers/hx/candidates").json()["items"] == []
    api.clock.now = NOW + 2 * DAY  # everything seeded lives one day
    for path, params in (
        (BY_IMPACT, {"impactLevel": "high"}),
        (BY_SCORE, {"offerType": "premium"}),
        (BY_RISK, {"riskLevel": "critical"}),
    ):
        assert customer_ids(api.get(path, **params)) == []
    assert api.get("/v1/customers/h00/candidates").json()["items"] == []


def test_by_score_across_segments_with_offer_type(api):
    ids = customer_ids(api.get(BY_SCORE, offerType="premium", minScore=0.5))
    assert ids == [f"w{i:02d}" for i in (18, 16, 14, 12, 10, 8)]
    items, sizes = drain(api, BY_SCORE, offerType="standard", limit=3)
    assert sizes == [3, 3, 3, 1] and {c["offerType"] for c in items} == {"standard"}
    assert customer_ids(api.get(BY_SCORE, offerType="nothing")) == []


def test_by_risk_level_min_score(api):
    ids = customer_ids(api.get(BY_RISK, riskLevel="critical", minScore=0.7))
    assert ids == ["h00", "k8", "k6"]
    assert customer_ids(api.get(BY_RISK, riskLevel="high", minScore=0.69)) == ["k9", "k7", "k5"]


def test_holdout_candidates_are_never_served(api):
    # The control group is stored (and exported for measurement) but no route hands it to a channel: not the three
    # spec queries (the fast path on SQLite), not the customer view.
    for program, partition_extra in (
        (REFUNDS, ("high", "full")),
        (CHURN, ("critical", "premium")),
        (WINBACK, ("premium", "premium")),
    ):
        segment, offer_type = partition_extra
        api.candidates.replace_partition(
            program,
            "2024-01-02",
            [
                rec(
                    "ctl",
                    program=program,
                    partition="2024-01-02",
                    segment=segment,
                    offer_type=offer_type,
                    score=0.999,
                    holdout=True,
                )
            ],
            now=NOW,
        )
        assert api.candidates.get("ctl", program, now=NOW)["holdout"] is True
    assert "ctl" not in customer_ids(api.get(BY_IMPACT, impactLevel="high", refundType="full", limit=200))
    assert "ctl" not in customer_ids(api.get(BY_RISK, riskLevel="critical", limit=200))
    assert "ctl" not in customer_ids(api.get(BY_SCORE, offerType="premium", limit=200))
    assert customer_ids(api.get(BY_SCORE, offerType="premium", limit=1)) == ["w18"]
    assert api.get("/v1/customers/ctl/candidates").json() == {"customerId": "ctl", "items": []}


def test_customer_view_is_limited_to_readable_programs(api):
    assert sorted(c["programId"] for c in api.get("/v1/customers/h00/candidates").json()["items"]) == [CHURN, REFUNDS]
    assert [c["programId"] for c in api.get("/v1/customers/h00/candidates", key="refunds").json()["items"]] == [REFUNDS]
    assert api.get("/v1/customers/nobody/candidates").json() == {"customerId": "nobody", "items": []}
    assert api.get("/v1/customers/h00/candidates", key="agent").status_code == 403


# -- auth ------------------------------------------------------------------------------------------------------------


def test_every_route_but_health_requires_a_valid_key(api):
    assert api.get("/health", key=None).json() == {"status": "ok"}
    spec = api.client.get("/openapi.json").json()
    fill = {
        "{program}": REFUNDS,
        "{customerId}": "h00",
        "{messageId}": "m1",
        "{taskId}": "t1",
        "{keyId}": "0123456789abcdef",
    }
    admin = api.keys["admin"]
    tampered = admin[:-1] + ("B" if admin.endswith("A") else "A")  # the admin key, one character off
    checked = 0
    for path, ops in spec["paths"].items():
        if path == "/health":
            continue
        for template, value in fill.items():
            path = path.replace(template, value)
        for method in ops:
            for headers in (
                {},
                {"X-API-Key": "ek_0123456789abcdef_" + "x" * 43},
                {"X-API-Key": "garbage"},
                {"X-API-Key": tampered},
            ):
                r = api.client.request(method.upper(), path, headers=headers, json={"outcome": "accepted"})
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.headers["www-authenticate"] == "ApiKey"
                checked += 1
    assert checked == 4 * 19  # 18 routes, and the assigned call tasks (#11)


@pytest.mark.parametrize(
    "key, path, method",
    [
        ("refunds", BY_SCORE + "?offerType=premium", "GET"),
        ("agent", BY_IMPACT + "?impactLevel=high", "GET"),
        ("ingest", BY_RISK + "?riskLevel=high", "GET"),
        ("agent", "/v1/customers/c1/inbox", "GET"),
        ("reader", "/v1/customers/c1/inbox/m1/seen", "POST"),
        ("admin", "/v1/customers/c1/inbox/m1/dismiss", "POST"),
        ("inapp", f"/v1/programs/{CHURN}/call-tasks", "GET"),
        ("reader", "/v1/call-tasks/t1", "GET"),
        ("inapp", "/v1/call-tasks/t1/claim", "POST"),
        ("reader", "/v1/call-tasks/t1/complete", "POST"),
        ("reader", "/v1/customers/c1", "DELETE"),
        ("agent", "/v1/admin/api-keys", "GET"),
        ("inapp", "/v1/admin/api-keys", "POST"),
        ("reader", "/v1/admin/api-keys/0123456789abcdef", "DELETE"),
    ],
)
def test_wrong_scope_is_403(api, key, path, method):
    body = {"outcome": "accepted"} if path.endswith("complete") else {"name": "x", "scopes": ["agent"]}
    r = api.client.request(method, path, headers={"X-API-Key": api.keys[key]}, json=body)
    assert r.status_code == 403, r.text
    assert "scope" in r.json()["detail"]


def test_rate_limit_429_with_retry_after(api):
    _, key = create_api_key(api.engagement, ["read:*"], "slow", rate_per_second=0.5, burst=2)
    headers = {"X-API-Key": key}
    codes = [api.client.get(BY_RISK, params={"riskLevel": "high"}, headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = api.client.get(BY_RISK, params={"riskLevel": "high"}, headers=headers)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 2
    # Another key is not affected.
    assert api.get(BY_RISK, riskLevel="high").status_code == 200


def test_admin_key_lifecycle(api):
    r = api.post("/v1/admin/api-keys", "admin", {"name": "crm-reader", "scopes": [f"read:{CHURN}"]})
    assert r.status_code == 201, r.text
    created = r.json()
    new_key, key_id = created["apiKey"], created["keyId"]
    assert created["scopes"] == [f"read:{CHURN}"] and "keyHash" not in created
    stored = api.engagement.get_api_key(key_id)
    assert new_key not in str(stored) and stored["keyHash"] != new_key  # only a hash is stored
    headers = {"X-API-Key": new_key}
    assert api.client.get(BY_RISK, params={"riskLevel": "high"}, headers=headers).status_code == 200
    assert api.client.get(BY_IMPACT, params={"impactLevel": "high"}, headers=headers).status_code == 403
    listed = api.get("/v1/admin/api-keys", key="admin").json()["items"]
    assert key_id in {k["keyId"] for k in listed} and all("keyHash" not in k for k in listed)
    revoked = api.delete(f"/v1/admin/api-keys/{key_id}", "admin")
    assert revoked.status_code == 200 and revoked.json()["revokedAt"] == NOW
    assert api.client.get(BY_RISK, params={"riskLevel": "high"}, headers=headers).status_code == 401
    assert api.delete(f"/v1/admin/api-keys/{key_id}", "admin").status_code == 200  # idempotent
    assert api.delete("/v1/admin/api-keys/0123456789abcdef", "admin").status_code == 404
    bad = api.post("/v1/admin/api-keys", "admin", {"name": "x", "scopes": ["superuser"]})
    assert bad.status_code == 422


# -- validation --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, params",
    [
        (BY_IMPACT, {}),  # impactLevel required
        (BY_IMPACT, {"impactLevel": "high", "limit": 0}),
        (BY_IMPACT, {"impactLevel": "high", "limit": MAX_PAGE + 1}),
        (BY_IMPACT, {"impactLevel": "high", "limit": "ten"}),
        (BY_IMPACT, {"impactLevel": "high", "minScore": 1.5}),
        (BY_IMPACT, {"impactLevel": "high", "minScore": "nan"}),
        (BY_IMPACT, {"impactLevel": "a b"}),
        (BY_IMPACT, {"impactLevel": "high", "cursor": "not a cursor!"}),
        (BY_SCORE, {}),
        (BY_SCORE, {"offerType": "premium", "minScore": -0.1}),
        (BY_RISK, {"riskLevel": "x" * 65}),
        ("/v1/programs/Not_A_Program/candidates/by-risk-level", {"riskLevel": "high"}),
        (f"/v1/programs/{CHURN}/call-tasks", {"dueBefore": -1}),
    ],
)
def test_bad_parameters_get_422_without_echoing_input(api, path, params):
    key = "agent" if "call-tasks" in path else "reader"
    r = api.get(path, key=key, **params)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail and all({"loc", "msg", "type"} == set(e) for e in detail)


def test_bad_cursor_and_unknown_program(api):
    r = api.get(BY_IMPACT, impactLevel="high", cursor="bm90LWEtY3Vyc29y")
    assert r.status_code == 400 and r.json()["detail"] == "invalid cursor for this query"
    # A cursor of another query is refused, not silently reinterpreted.
    cursor = api.get(BY_IMPACT, impactLevel="high", limit=2).json()["nextCursor"]
    assert api.get(BY_IMPACT, impactLevel="medium", cursor=cursor).status_code == 400
    assert api.get("/v1/programs/abandoned-cart/candidates/by-score", offerType="x").status_code == 404
    assert api.get("/v1/programs/abandoned-cart/call-tasks", key="agent").status_code == 404


# -- in-app inbox ------------------------------------------------------------------------------------------------------


def test_inbox_lists_window_and_marks(api):
    api.engagement.upsert_inbox_message(message("m1", displayFrom=NOW - 10, displayUntil=NOW + 7 * DAY))
    api.engagement.upsert_inbox_message(message("m2", displayFrom=NOW + DAY, displayUntil=NOW + 8 * DAY))
    api.engagement.upsert_inbox_message(message("m3", customer="c2"))
    r = api.get("/v1/customers/c1/inbox", key="inapp")
    assert [m["messageId"] for m in r.json()["items"]] == ["m1"] and r.json()["items"][0]["state"] == "active"
    seen = api.post("/v1/customers/c1/inbox/m1/seen", "inapp")
    assert seen.status_code == 200 and seen.json()["state"] == "seen" and seen.json()["updatedAt"] == NOW
    assert api.post("/v1/customers/c1/inbox/m3/seen", "inapp").status_code == 404  # c2's message
    assert api.post("/v1/customers/c1/inbox/none/dismiss", "inapp").status_code == 404
    assert api.post("/v1/customers/c1/inbox/m1/dismiss", "inapp").json()["state"] == "dismissed"
    assert api.get("/v1/customers/c1/inbox", key="inapp").json()["items"] == []
    api.clock.now = NOW + DAY
    assert [m["messageId"] for m in api.get("/v1/customers/c1/inbox", key="inapp").json()["items"]] == ["m2"]
    api.clock.now = NOW + 8 * DAY
    assert api.get("/v1/customers/c1/inbox", key="inapp").json()["items"] == []


# -- call tasks --------------------------------------------------------------------------------------------------------


def test_call_task_flow_claim_expiry_complete(api):
    api.engagement.create_call_task(task("t1", due=NOW + DAY, priority=1))
    api.engagement.create_call_task(task("t2", due=NOW + 2 * DAY, priority=1))
    api.engagement.create_call_task(task("t0", due=NOW + DAY, priority=9))
    listing = api.get(f"/v1/programs/{CHURN}/call-tasks", key="agent")
    assert [t["taskId"] for t in listing.json()["items"]] == ["t0", "t1", "t2"]
    due = api.get(f"/v1/programs/{CHURN}/call-tasks", key="agent", dueBefore=NOW + DAY, limit=1)
    assert [t["taskId"] for t in due.json()["items"]] == ["t0"] and due.json()["nextCursor"]
    page2 = api.get(
        f"/v1/programs/{CHURN}/call-tasks", key="agent", dueBefore=NOW + DAY, limit=1, cursor=due.json()["nextCursor"]
    )
    assert [t["taskId"] for t in page2.json()["items"]] == ["t1"] and page2.json()["nextCursor"] is None

    claimed = api.post("/v1/call-tasks/t1/claim", "agent", {"claimSeconds": 600})
    assert claimed.status_code == 200 and claimed.json()["state"] == "claimed"
    assert claimed.json()["claimExpiresAt"] == NOW + 600
    other = api.post("/v1/call-tasks/t1/claim", "agent2")
    assert other.status_code == 409 and "another agent" in other.json()["detail"]
    assert api.post("/v1/call-tasks/t1/complete", "agent2", {"outcome": "accepted"}).status_code == 409
    assert "t1" not in [t["taskId"] for t in api.get(f"/v1/programs/{CHURN}/call-tasks", key="agent").json()["items"]]

    api.clock.now = NOW + 600  # the claim expires: listed again, another agent takes it
    assert api.post("/v1/call-tasks/t1/claim", "agent2").status_code == 200
    late = api.post("/v1/call-tasks/t1/complete", "agent", {"outcome": "accepted"})
    assert late.status_code == 409
    done = api.post("/v1/call-tasks/t1/complete", "agent2", {"outcome": "no_answer"})
    assert done.status_code == 200 and done.json()["outcome"] == "no_answer" and done.json()["state"] == "completed"
    assert api.post("/v1/call-tasks/t1/claim", "agent").status_code == 409
    assert api.get("/v1/call-tasks/t1", key="agent").json()["completedAt"] == NOW + 600
    assert api.get("/v1/call-tasks/nope", key="agent").status_code == 404
    assert api.post("/v1/call-tasks/nope/claim", "agent").status_code == 404
    assert api.post("/v1/call-tasks/t2/complete", "agent", {"outcome": "maybe"}).status_code == 422
    assert api.post("/v1/call-tasks/t2/claim", "agent", {"claimSeconds": 5}).status_code == 422

    # Own claim expired, nobody else took it: a clear message to claim again.
    api.post("/v1/call-tasks/t2/claim", "agent", {"claimSeconds": 60})
    api.clock.now += 61
    expired = api.post("/v1/call-tasks/t2/complete", "agent", {"outcome": "accepted"})
    assert expired.status_code == 409 and "expired" in expired.json()["detail"]


def test_concurrent_claims_one_agent_wins(api, request):
    api.engagement.create_call_task(task("hot"))
    keys = [create_api_key(api.engagement, ["agent"], f"agent-{i}", 1000, 1000)[1] for i in range(8)]
    barrier = threading.Barrier(len(keys))
    codes: list[int] = []
    # Against moto the claims take turns (its conditional writes are not atomic under concurrency; DynamoDB's
    # are): see tests/test_engagement_store.py::test_concurrent_claims_have_one_winner.
    turns = threading.Lock() if "dynamodb" in request.node.callspec.id else contextlib.nullcontext()

    def claim(key: str) -> None:
        barrier.wait()
        with turns:
            codes.append(api.client.post("/v1/call-tasks/hot/claim", headers={"X-API-Key": key}).status_code)

    threads = [threading.Thread(target=claim, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] + [409] * 7


# -- GDPR ----------------------------------------------------------------------------------------------------------------


def test_gdpr_delete_everywhere(api):
    api.engagement.upsert_inbox_message(message("m1", customer="h00"))
    api.engagement.create_call_task(task("t1", customer="h00"))
    r = api.delete("/v1/customers/h00", "admin")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "customerId": "h00",
        "candidates": 2,
        "inboxMessages": 1,
        "callTasks": 1,
        "other": {"eventQueue": 1},
    }
    assert api.erased == ["h00"]
    assert api.get("/v1/customers/h00/candidates").json()["items"] == []
    assert "h00" not in customer_ids(api.get(BY_IMPACT, impactLevel="high", limit=200))
    assert api.get("/v1/customers/h00/inbox", key="inapp").json()["items"] == []
    assert api.get("/v1/call-tasks/t1", key="agent").status_code == 404
    assert api.engagement.is_deleted("h00") and "h00" in api.engagement.deleted_customers()
    assert api.engagement.upsert_inbox_message(message("m9", customer="h00")) is False
    again = api.delete("/v1/customers/h00", "admin").json()
    assert (again["candidates"], again["inboxMessages"], again["callTasks"]) == (0, 0, 0)


# -- operations ----------------------------------------------------------------------------------------------------------


def test_request_logs_carry_no_personal_data(api, caplog):
    with caplog.at_level(logging.INFO, logger="engage.serving"):
        api.get("/v1/customers/h00/candidates")
        api.get(BY_IMPACT, impactLevel="high", refundType="full")
        api.get("/v1/customers/h00/inbox", key="agent")
    lines = [r.getMessage() for r in caplog.records if r.name == "engage.serving"]
    assert len(lines) == 3
    assert "GET /v1/customers/{customerId}/candidates 200" in lines[0]
    assert "GET /v1/programs/{program}/candidates/by-impact 200" in lines[1]
    assert "/v1/customers/{customerId}/inbox 403" in lines[2]
    key_id = api.keys["reader"].split("_")[1]
    assert f"key={key_id}" in lines[0]
    text = "\n".join(lines)
    assert "h00" not in text and "refundType" not in text and "full" not in text
    assert api.keys["reader"].split("_", 2)[2] not in text


def test_ensure_demo_key_is_idempotent_and_works(tmp_path):
    settings = Settings(env="local", home=tmp_path)
    key = ensure_demo_key(settings)
    assert ensure_demo_key(settings) == key
    engagement = SqliteEngagementStore(path=str(settings.engagement_path))
    assert [k["name"] for k in engagement.list_api_keys()].count("local-demo") == 1  # (and the managers' keys)
    app = create_app(SqliteCandidateStore(path=str(settings.store_path)), engagement)
    with TestClient(app) as client:
        r = client.get(BY_SCORE, params={"offerType": "premium"}, headers={"X-API-Key": key})
        assert r.status_code == 200 and r.json() == {"items": [], "nextCursor": None}
        assert client.get("/v1/call-tasks/x", headers={"X-API-Key": key}).status_code == 404  # agent scope
        assert client.delete("/v1/customers/x", headers={"X-API-Key": key}).status_code == 403  # not admin
    engagement.revoke_api_key(key.split("_")[1])
    assert ensure_demo_key(settings) != key  # a revoked demo key is replaced


def test_unknown_query_parameter_is_rejected(api):
    r = api.get(BY_RISK, riskLevel="critical", minscore=0.99)  # misspelt: would otherwise return every score
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "minscore"]
    assert api.get("/health", key=None, verbose="1").status_code == 422


# -- the candidate pages' fast path (SQLite) answers exactly what the FastAPI routes answer ------------------------------


class ContextWithheld(Exception):
    """A FastAPI route asked for the serving context (test_fast_path_answers_like_the_fastapi_routes's bare app)."""


def withheld_context() -> ServingContext:
    raise ContextWithheld


async def any_query() -> None:
    """Stands in for the app-wide check of query names, so a request the fast path declines reaches the route."""


def test_fast_path_answers_like_the_fastapi_routes(tmp_path):
    candidates = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    engagement = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    seed(candidates)
    clock = Clock()
    keys = {
        name: create_api_key(engagement, scopes, name, rate_per_second=10_000, burst=10_000)[1]
        for name, scopes in {"reader": ["read:*"], "refunds": [f"read:{REFUNDS}"], "agent": ["agent"]}.items()
    }
    fast_app = create_app(candidates, engagement, programs=PROGRAMS, clock=clock)
    slow_app = create_app(candidates, engagement, programs=PROGRAMS, clock=clock, fast_paths=False)
    # Proof that the fast path serves: with every FastAPI route unable to answer (the serving context withheld from
    # their dependencies), by-score still answers a plainly valid request, and passes anything else on to FastAPI.
    bare_app = create_app(candidates, engagement, programs=PROGRAMS, clock=clock)
    bare_app.dependency_overrides[get_context] = withheld_context
    bare_app.dependency_overrides[reject_unknown_query] = any_query
    with TestClient(bare_app) as bare:
        headers = {"X-API-Key": keys["reader"]}
        assert customer_ids(bare.get(BY_SCORE, params={"offerType": "premium", "minScore": 0.5}, headers=headers)) == [
            f"w{i:02d}" for i in (18, 16, 14, 12, 10, 8)
        ]
        with pytest.raises(ContextWithheld):
            bare.get(BY_SCORE, params={"offerType": "premium", "x": 1}, headers=headers)
    queries = [
        (BY_SCORE, "offerType=premium"),
        (BY_SCORE, "offerType=premium&minScore=0.5&limit=2"),
        (BY_SCORE, "offerType=standard&limit=3"),
        (BY_SCORE, "offerType=nothing"),
        (BY_SCORE, "limit=3"),
        (BY_SCORE, "offerType=premium&minScore=1"),
        (BY_SCORE, "offerType=premium&minScore=1.0"),
        (BY_SCORE, "offerType=premium&minScore=.5"),
        (BY_SCORE, "offerType=premium&minScore=1.5"),
        (BY_SCORE, "offerType=premium&minScore=-0.1"),
        (BY_SCORE, "offerType=premium&minScore=abc"),
        (BY_SCORE, "offerType=premium&limit=0"),
        (BY_SCORE, "offerType=premium&limit=200"),
        (BY_SCORE, "offerType=premium&limit=201"),
        (BY_SCORE, "offerType=premium&limit=050"),
        (BY_SCORE, "offerType=premium&minscore=0.5"),
        (BY_SCORE, "offerType=premium&offerType=standard"),
        (BY_SCORE, "offerType=%70remium"),
        (BY_SCORE, "offerType="),
        (BY_SCORE, "offerType=pre%20mium"),
        (BY_SCORE, "offerType=premium&cursor=bm90LWEtY3Vyc29y"),
        (BY_SCORE, "offerType=premium&cursor=a.b"),
        (BY_SCORE, "offerType=premium&limit"),
        (BY_SCORE + "/", "offerType=premium"),
        ("/v1/programs/abandoned-cart/candidates/by-score", "offerType=x"),
        ("/v1/programs/Bad_Program/candidates/by-score", "offerType=x"),
        (BY_IMPACT, "impactLevel=high&refundType=full&limit=10"),
        (BY_IMPACT, "impactLevel=high&minScore=0.98"),
        (BY_IMPACT, "impactLevel=high&refundType=bad%20type"),
        (BY_IMPACT, "refundType=full"),
        (BY_RISK, "riskLevel=critical&minScore=0.7"),
        (BY_RISK, "riskLevel=high&refundType=full"),
    ]

    def both(path: str, query: str, key: str | None = "reader", method: str = "GET") -> Any:
        headers = {"X-API-Key": keys[key] if key in keys else key} if key else {}
        with TestClient(fast_app) as fast, TestClient(slow_app) as slow:
            a = fast.request(method, f"{path}?{query}", headers=headers)
            b = slow.request(method, f"{path}?{query}", headers=headers)
        assert (a.status_code, a.content, a.headers.get("content-type")) == (
            b.status_code,
            b.content,
            b.headers.get("content-type"),
        ), (path, query, key)
        return a

    for path, query in queries:
        both(path, query)
    assert both(BY_SCORE, "offerType=premium").status_code == 200
    # Pages chain through cursors alike, and a cursor of another query is refused alike.
    for path, query in ((BY_SCORE, "offerType=standard&limit=3"), (BY_IMPACT, "impactLevel=high&limit=4")):
        cursor = None
        for _ in range(20):
            body = both(path, query + (f"&cursor={cursor}" if cursor else "")).json()
            cursor = body["nextCursor"]
            if cursor is None:
                break
        else:
            raise AssertionError("pagination did not end")
    cursor = both(BY_IMPACT, "impactLevel=high&limit=2").json()["nextCursor"]
    assert both(BY_SCORE, f"offerType=premium&cursor={cursor}").status_code == 400
    # Keys and scopes.
    for key in (None, "agent", "refunds", "ek_0123456789abcdef_" + "x" * 43, "garbage"):
        assert both(BY_SCORE, "offerType=premium", key=key).status_code in (401, 403)
    assert both(f"/v1/programs/{REFUNDS}/candidates/by-score", "offerType=full", key="refunds").status_code == 200
    assert both(BY_SCORE, "offerType=premium", method="POST").status_code == 405
    # Expiry: the clock moves, expired candidates vanish from both.
    clock.now = NOW + 100
    assert "hx" not in [
        c["customerId"] for c in both(f"/v1/programs/{REFUNDS}/candidates/by-score", "offerType=full").json()["items"]
    ]
    clock.now = NOW + 2 * DAY
    assert both(BY_SCORE, "offerType=premium").json() == {"items": [], "nextCursor": None}


def test_fast_path_rate_limit_and_access_log(tmp_path, caplog):
    candidates = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    engagement = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    seed(candidates)
    app = create_app(candidates, engagement, programs=PROGRAMS, clock=Clock())
    record, key = create_api_key(engagement, ["read:*"], "slow", rate_per_second=0.5, burst=2)
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="engage.serving"):
        codes = [
            client.get(BY_SCORE, params={"offerType": "premium"}, headers={"X-API-Key": key}).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
    lines = [r.getMessage() for r in caplog.records if r.name == "engage.serving"]
    assert lines[0].startswith("GET /v1/programs/{program}/candidates/by-score 200 ")
    assert lines[0].endswith(f"key={record['keyId']}") and "premium" not in " ".join(lines)


def test_sqlite_json_pages_equal_the_decoded_pages(tmp_path):
    """The splice of stored JSON (what the API serves) decodes to exactly the records `query_*` returns."""
    import orjson

    candidates = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    seed(candidates)
    calls = [
        ("query_by_score", (WINBACK, "standard"), {"limit": 3}),
        ("query_by_score", (WINBACK, "premium"), {"min_score": 0.5}),
        ("query_by_segment", (REFUNDS, "high"), {"limit": 4, "offer_type": "full"}),
        ("query_by_segment", (CHURN, "critical"), {"min_score": 0.7, "now": NOW + 100}),
    ]
    for name, args, kwargs in calls:
        kwargs = {"now": NOW, **kwargs}
        cursor = None
        for _ in range(20):
            page = getattr(candidates, name)(*args, cursor=cursor, **kwargs)
            json_page = getattr(candidates, f"{name}_json")(*args, cursor=cursor, **kwargs)
            assert orjson.loads(json_page.items) == page.items and json_page.next_cursor == page.next_cursor
            cursor = page.next_cursor
            if cursor is None:
                break


def test_request_bodies_take_no_boolean_for_a_number(tmp_path):
    """Schemathesis found `{"burst": true}` accepted as burst 1: request bodies are strict."""
    engagement = SqliteEngagementStore(path=str(tmp_path / "engagement.sqlite"))
    app = create_app(SqliteCandidateStore(path=str(tmp_path / "store.sqlite")), engagement)
    admin = create_api_key(engagement, ["admin"], "admin")[1]
    with TestClient(app) as client:
        body = {"name": "k", "scopes": ["agent"], "burst": True}
        assert client.post("/v1/admin/api-keys", json=body, headers={"X-API-Key": admin}).status_code == 422
        body["burst"] = 5
        assert client.post("/v1/admin/api-keys", json=body, headers={"X-API-Key": admin}).status_code == 201
