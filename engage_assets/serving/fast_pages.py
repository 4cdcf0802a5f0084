"""The candidate page routes (by-score, by-impact, by-risk-level) without FastAPI's per-request machinery.

They are the high-volume reads (issue 3 asks 2,000 pages/s with p99 <= 10 ms on 2 cores); FastAPI's dependency
and parameter solving costs more than the query itself.  This middleware serves a request only when it is plainly
valid: a GET of a known route with only documented, unencoded query parameters that pass the same patterns and
bounds, a valid key with the scope, the program known.  Anything else (a missing or bad key, a bad or unusual
parameter, an unknown program…) goes on to the FastAPI route, which answers the error exactly as documented; the
rate-limit token is taken last, so a request passed on is never charged twice.  The routes' OpenAPI documentation
stays with the FastAPI routes (tests check both paths answer the same).  Embedded (SQLite) stores only: their
queries run inline on the event loop.
"""

import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from engage_assets.serving import models as m
from engage_assets.serving.auth import Principal, TooManyInvalidKeys
from engage_assets.serving.context import ServingContext
from engage_assets.serving.params import DEFAULT_PAGE, MAX_PAGE
from resources.store.base import JsonPage
from resources.store.sqlite import SqliteCandidateStore

PROGRAM_RE = re.compile(m.PROGRAM_PATTERN)
LABEL_RE = re.compile(m.LABEL_PATTERN)
CURSOR_RE = re.compile(m.CURSOR_PATTERN)
SCORE_RE = re.compile(r"[01](\.[0-9]{1,17})?")  # the plain spellings; others (".5", "5e-1") take the slow path
LIMIT_RE = re.compile(r"[1-9][0-9]{0,2}")
PREFIX = "/v1/programs/"
API_KEY_HEADER = b"x-api-key"
JSON_HEADERS = [(b"content-type", b"application/json")]


class FastQuery(NamedTuple):
    """How one page route maps onto its store query."""

    label: str  # the required label parameter (the query's segment or offer type)
    option: str | None  # an optional label parameter, passed as `offer_type`
    query: Callable[..., JsonPage]  # the store's `<query>_json`


def page_body(page: JsonPage) -> bytes:
    """The page's JSON body, spliced from the stored JSON of its items."""
    return b'{"items":' + page.items + b',"nextCursor":' + orjson.dumps(page.next_cursor) + b"}"


def fast_routes(routers: Iterable[APIRouter], context: ServingContext) -> dict[str, tuple[APIRoute, FastQuery]] | None:
    """The page routes the fast path can serve, by the path's last segment; None unless both stores are embedded.
    Each comes with its APIRoute (from the routers the app includes: what routing would put in the scope)."""
    candidates = context.candidates
    if not (context.inline_engagement and isinstance(candidates, SqliteCandidateStore)):
        return None
    fast = {
        "by-score": FastQuery("offerType", None, candidates.query_by_score_json),
        "by-impact": FastQuery("impactLevel", "refundType", candidates.query_by_segment_json),
        "by-risk-level": FastQuery("riskLevel", None, candidates.query_by_segment_json),
    }
    api_routes = {
        r.path.rsplit("/", 1)[1]: r
        for router in routers
        for r in router.routes
        if isinstance(r, APIRoute) and r.path.startswith(PREFIX + "{program}/candidates/")
    }
    return {k: (api_routes[k], v) for k, v in fast.items()}


def split_query(qs: bytes) -> dict[str, str] | None:
    """The query string's parameters when each appears once, unencoded, with a value; else None."""
    if b"%" in qs or b"+" in qs:  # encoded values: leave decoding to Starlette
        return None
    params: dict[str, str] = {}
    if qs:
        for part in qs.decode("latin-1").split("&"):
            name, eq, value = part.partition("=")
            if not eq or not value or name in params:
                return None
            params[name] = value
    return params


def parse_page_query(qs: bytes, spec: FastQuery) -> tuple[str, dict[str, Any]] | None:
    """(label, the store query's keyword arguments) when every parameter is documented and valid, else None."""
    params = split_query(qs)
    if params is None:
        return None
    label = params.pop(spec.label, None)
    if label is None or LABEL_RE.fullmatch(label) is None:
        return None
    option = params.pop(spec.option, None) if spec.option else None
    if option is not None and LABEL_RE.fullmatch(option) is None:
        return None
    min_score = params.pop("minScore", None)
    if min_score is not None and (SCORE_RE.fullmatch(min_score) is None or float(min_score) > 1.0):
        return None
    limit = params.pop("limit", None)
    if limit is not None and (LIMIT_RE.fullmatch(limit) is None or int(limit) > MAX_PAGE):
        return None
    cursor = params.pop("cursor", None)
    if params or (cursor is not None and CURSOR_RE.fullmatch(cursor) is None):
        return None  # an unknown parameter (422) or a malformed cursor
    kwargs: dict[str, Any] = {
        "min_score": None if min_score is None else float(min_score),
        "limit": DEFAULT_PAGE if limit is None else int(limit),
        "cursor": cursor,
    }
    if spec.option:
        kwargs["offer_type"] = option
    return label, kwargs


class FastPages:
    """Pure ASGI middleware answering plainly valid page requests itself (see the module's docstring)."""

    def __init__(self, app: ASGIApp, routes: dict[str, tuple[APIRoute, FastQuery]], context: ServingContext) -> None:
        self.app = app
        self.routes = routes  # the path's last segment -> (its APIRoute, its store query)
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request here when it is plainly valid, else pass it on."""
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(PREFIX):
                program, sep, route = path[len(PREFIX) :].partition("/candidates/")
                entry = self.routes.get(route) if sep else None
                if entry is not None and await self.serve(scope, receive, send, program, *entry):
                    return
        await self.app(scope, receive, send)

    def authorize(self, scope: Scope, program: str) -> Principal | None:
        """The caller, when its key is valid, may read the program and has a token left; else None (FastAPI
        answers: an empty bucket stays empty, so nothing is taken twice)."""
        key = next((v for k, v in scope["headers"] if k == API_KEY_HEADER), None)
        try:  # the outcome stays on the scope: the FastAPI route behind answers it without verifying again
            who = self.context.verifier.authenticate(scope, key.decode("latin-1") if key else None)
        except TooManyInvalidKeys:
            return None
        if who is None or not who.can_read(program):
            return None
        if self.context.limiter.take(who.key_id, who.rate_per_second, who.burst):
            return None
        return who

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, program: str, route: APIRoute, spec: FastQuery
    ) -> bool:
        """Answer the request and return True, or return False (untouched) to pass it to FastAPI."""
        known = self.context.known_programs
        if PROGRAM_RE.fullmatch(program) is None or (known is not None and program not in known):
            return False
        parsed = parse_page_query(scope["query_string"], spec)
        who = None if parsed is None else self.authorize(scope, program)
        if parsed is None or who is None:
            return False
        scope["route"] = route  # for the access log, as routing would have set it
        scope.setdefault("state", {})["key_id"] = who.key_id
        label, kwargs = parsed
        try:
            page = spec.query(program, label, now=self.context.clock(), **kwargs)
        except ValueError as e:  # an invalid or foreign cursor: answered here, its token is spent
            await JSONResponse({"detail": str(e)}, status_code=400)(scope, receive, send)
            return True
        body = page_body(page)
        headers = [(b"content-length", str(len(body)).encode()), *JSON_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
