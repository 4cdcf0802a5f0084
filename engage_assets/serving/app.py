"""The serving API (FastAPI): candidates by the spec's queries, the customer view, the in-app inbox, call tasks,
GDPR deletion, key management and event ingest, over a CandidateStore, an EngagementStore and an EventSource.

Why it looks the way it does:
- `create_app(...)` takes its stores (and the clock) as arguments: tests run the same app over SQLite and DynamoDB
  (moto), and production wires DynamoDB.  Other issues add their routes to the app it returns.
- The routes live in one router per OpenAPI tag (`engage_assets.serving.routes`); what they share is one
  `ServingContext` on `app.state.serving`, handed to them by `Depends` (`engage_assets.serving.dependencies`).
- The candidate pages have a fast path for the embedded stores (`engage_assets.serving.fast_pages`).
- Logs carry the route *template*, status, latency and key id: never a path or query value (customer ids, etc.);
  uvicorn's access log, when it is on, too (`engage_assets.serving.access_log.RouteTemplates`).
"""

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from engage_assets.serving.access_log import AccessLog, redact_uvicorn_access_log
from engage_assets.serving.auth import KeyVerifier
from engage_assets.serving.context import ServingContext
from engage_assets.serving.dependencies import reject_unknown_query
from engage_assets.serving.errors import http_error, validation_error
from engage_assets.serving.fast_pages import FastPages, fast_routes
from engage_assets.serving.params import DEFAULT_PAGE, MAX_PAGE
from engage_assets.serving.routes import ROUTERS
from engage_assets.serving.routes import webhooks as webhook_routes
from engage_assets.serving.webhooks import Webhooks
from resources.engagement.base import EngagementStore
from resources.events.base import EventSource
from resources.store.base import CandidateStore

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "create_app"]

DESCRIPTION = (
    "Candidates (GetCandidatesByImpact / ByScore / ByRiskLevel), the in-app inbox, call tasks, "
    "GDPR deletion, API keys, event ingest (PutEvents) and the providers' outcome webhooks.  Every route but /health "
    "needs an `X-API-Key` (the SES webhook also takes it as HTTP Basic credentials' password)."
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On shutdown (uvicorn has drained in-flight requests), release this thread's store handles."""
    yield
    context: ServingContext = app.state.serving
    for store in (context.candidates, context.engagement):
        close = getattr(store, "close", None)
        if callable(close):
            close()


def create_app(
    candidates: CandidateStore,
    engagement: EngagementStore,
    *,
    programs: Iterable[str] | None = None,
    erasers: Mapping[str, Callable[[str], int]] | None = None,
    clock: Callable[[], float] = time.time,
    key_cache_seconds: float = 10.0,
    invalid_keys: tuple[float, int] = (1.0, 100),
    fast_paths: bool = True,
    events: EventSource | None = None,
    webhooks: Webhooks | None = None,
) -> FastAPI:
    """The serving app over the given stores.

    programs: known programIds (unknown ones get 404); None accepts any well-formed id.
    erasers:  extra GDPR erasers by name (event queue, delivery ledger…), each `customer_id -> items removed`.
    clock:    epoch seconds; the stores' `now` (tests pin it to check expiry).
    invalid_keys: (rate per second, burst) of invalid keys a client may present before it gets 429 (no store read).
    fast_paths: serve the candidate pages through `FastPages` (embedded stores only); False: FastAPI alone.
    events:   where `POST /v1/events` sends accepted events; None: the route answers 503.
    webhooks: the outcome webhooks' outcome store, delivery ledger and SNS verifier; None: no webhook routes.
    """
    context = ServingContext(
        candidates=candidates,
        engagement=engagement,
        known_programs=frozenset(programs) if programs is not None else None,
        erasers=dict(erasers or {}),
        verifier=KeyVerifier(
            engagement, cache_seconds=key_cache_seconds, invalid_rate=invalid_keys[0], invalid_burst=invalid_keys[1]
        ),
        clock=clock,
        events=events,
        webhooks=webhooks,
    )
    app = FastAPI(
        dependencies=[Depends(reject_unknown_query)],
        title="Engage serving API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.serving = context
    app.state.engagement = engagement  # kept for routes other issues add
    app.state.candidates = candidates
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for router in ROUTERS:
        app.include_router(router)
    if webhooks is not None:
        app.include_router(webhook_routes.router)
    routes = fast_routes(ROUTERS, context) if fast_paths else None
    if routes is not None:
        app.add_middleware(FastPages, routes=routes, context=context)
    app.add_middleware(AccessLog)  # outermost: it logs the fast path's requests too
    redact_uvicorn_access_log(app.router.routes)  # uvicorn's own access log, if on, logs route templates too
    return app
