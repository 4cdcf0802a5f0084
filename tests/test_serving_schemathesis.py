"""Schemathesis over the serving API's OpenAPI document: generated valid and invalid requests to every operation,
checked for 5xx, undocumented status codes, response-schema violations, and acceptance of invalid input.

The app runs over the embedded stores (SQLite) with data in every index, an event queue for ingest, an admin key
holding every scope (so generated requests reach the handlers, not just the auth layer), and any well-formed program
id accepted.
"""

from __future__ import annotations

import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from engage_assets.serving.app import create_app
from engage_assets.serving.auth import create_api_key
from resources.engagement.sqlite import SqliteEngagementStore
from resources.events.local import LocalEventQueue
from resources.store.sqlite import SqliteCandidateStore
from tests.test_engagement_store import message, task
from tests.test_serving import NOW, Clock, seed

# Built at import (schemathesis's eager loader; its lazy fixture loader does not run under this pytest): a private
# temporary directory, removed when the test process exits.
_home = tempfile.TemporaryDirectory(prefix="engage-schemathesis-")


def _build_app():
    candidates = SqliteCandidateStore(path=f"{_home.name}/store.sqlite")
    engagement = SqliteEngagementStore(path=f"{_home.name}/engagement.sqlite")
    seed(candidates)
    for i in range(5):
        engagement.upsert_inbox_message(message(f"m{i}", customer=f"c{i % 2}"))
        engagement.create_call_task(task(f"t{i}", customer=f"c{i % 2}", due=NOW + i * 3600))
    key = create_api_key(engagement, ["read:*", "agent", "inapp", "admin", "ingest"], "schemathesis", 1e5, 100_000)[1]
    events = LocalEventQueue(path=f"{_home.name}/events.sqlite")  # POST /v1/events answers 503 without one
    # Schemathesis presents hundreds of invalid keys (its auth checks expect 401): no per-client throttling here.
    return create_app(candidates, engagement, clock=Clock(), events=events, invalid_keys=(1e5, 100_000)), key


APP, KEY = _build_app()
STATUSES: dict[str, set[int]] = {}
# A schema-valid but meaningless cursor (any base64url string matches the pattern) is a documented 400; every other
# schema-valid request must be accepted.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]}
        },
        # OpenAPI-aware auth: schemathesis sends the key itself and knows when a case deliberately leaves it out.
        "auth": {"openapi": {"APIKeyHeader": {"api_key": KEY}}},
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


OPERATIONS = {result.ok().label: result.ok() for result in schema.get_all_operations()}


# One pytest test per operation and mode, each a hypothesis run (rather than schemathesis's subtest-based
# `parametrize`, which under pytest-xdist ran only the first operation here).
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_openapi_contract(label, mode):
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        # Every check schemathesis has: no 5xx, documented status codes and content types, responses match their
        # schemas, invalid input rejected with 4xx, valid input accepted, auth enforced.
        response = case.call_and_validate()
        STATUSES.setdefault(label, set()).add(response.status_code)

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("nothing in this operation can be made invalid")  # /health: no parameters, no body


def test_generated_requests_reached_the_handlers():
    """Guard against a vacuous run (every case rejected by auth): the query, list, admin and deletion operations
    answered 2xx at least once (operations on one task or message mostly meet random ids: 404)."""
    if len(STATUSES) < len(OPERATIONS):
        pytest.skip("run with the whole module")
    ok = [op for op, codes in STATUSES.items() if any(200 <= c < 300 for c in codes)]
    assert len(ok) >= 10, STATUSES
