"""The serving API (FastAPI): candidates by the spec's queries, the customer view, the in-app inbox, call tasks,
GDPR deletion and key management, over a CandidateStore and an EngagementStore.

Why it looks the way it does:
- `create_app(...)` takes its stores (and the clock) as arguments: tests run the same app over SQLite and DynamoDB
  (moto), and production wires DynamoDB.  Other issues add their routes to the app it returns.
- Reads go through the store's index queries only (query_by_segment / query_by_score / customer_candidates),
  never a scan; the stores filter expired candidates on every read.
- Candidate pages are serialised with orjson straight from the stored records (a response model still documents
  them in OpenAPI): validating 50 records through pydantic per request would cost more than the query.
- SQLite calls run inline on the event loop (a keyset page is ~0.2 ms, a thread hop costs more); network-bound
  backends (DynamoDB) run in the thread pool.
- Logs carry the route *template*, status, latency and key id: never a path or query value (customer ids, etc.).
"""
# No `from __future__ import annotations`: FastAPI resolves the route signatures, which name local dependencies.

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from engage_assets.serving import models as m
from engage_assets.serving.auth import KeyVerifier, Principal, RateLimiter, create_api_key, public_key_record
from resources.engagement.base import EngagementStore, SqliteEngagementStore
from resources.store.base import CandidateStore, JsonPage, Page

log = logging.getLogger("engage.serving")

MAX_PAGE = 200
DEFAULT_PAGE = 50

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`ek_<keyId>_<secret>`")

_E401 = {401: {"model": m.Problem, "description": "Missing or invalid API key"}}
_E403 = {403: {"model": m.Problem, "description": "The key lacks the required scope"}}
_E404 = {404: {"model": m.Problem, "description": "Not found"}}
_E409 = {409: {"model": m.Problem, "description": "Conflicts with the resource's state"}}
_E400 = {400: {"model": m.Problem, "description": "Malformed request body or invalid cursor"}}
_E429 = {
    429: {
        "model": m.Problem,
        "description": "Rate limit exceeded; see Retry-After",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
    }
}
_COMMON = {**_E401, **_E403, **_E429}

ProgramId = Annotated[str, Path(pattern=m.PROGRAM_PATTERN, description="programId, e.g. churn-prevention")]
CustomerId = Annotated[str, Path(pattern=m.ID_PATTERN, description="customerId")]
Label = Annotated[str, Query(pattern=m.LABEL_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size (1-{MAX_PAGE})")]
Cursor = Annotated[str | None, Query(pattern=m.CURSOR_PATTERN, description="nextCursor of the previous page")]
MinScore = Annotated[float | None, Query(ge=0.0, le=1.0, description="Lowest score returned (0-1)")]


def _is_inline(store: Any) -> bool:
    from resources.store.sqlite import SqliteCandidateStore

    return isinstance(store, (SqliteCandidateStore, SqliteEngagementStore))


def _page_body(page: JsonPage) -> bytes:
    return b'{"items":' + page.items + b',"nextCursor":' + orjson.dumps(page.next_cursor) + b"}"


class _FastPages:
    """The candidate page routes (by-score, by-impact, by-risk-level) without FastAPI's per-request machinery.

    They are the high-volume reads (issue 3 asks 2,000 pages/s with p99 <= 10 ms on 2 cores); FastAPI's dependency
    and parameter solving costs more than the query itself.  This middleware serves a request only when it is
    plainly valid: a GET of a known route with only documented, unencoded query parameters that pass the same
    patterns and bounds, a valid key with the scope, the program known.  Anything else (a missing or bad key, a
    bad or unusual parameter, an unknown program…) goes on to the FastAPI route, which answers the error exactly
    as documented; the rate-limit token is taken last, so a request passed on is never charged twice.  The
    routes' OpenAPI documentation stays with the FastAPI routes (tests check both paths answer the same).
    """

    def __init__(self, app: Any, routes: dict[str, tuple[Any, Callable[..., Any]]], serve: Callable[..., Any]):
        self.app = app
        self.routes = routes  # the path's last segment -> (APIRoute, handler(program, params) -> (principal, ...))
        self.serve = serve

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith("/v1/programs/"):
                program, sep, route = path[13:].partition("/candidates/")
                entry = self.routes.get(route) if sep else None
                if entry is not None and await self.serve(scope, send, program, *entry):
                    return
        await self.app(scope, receive, send)


class _AccessLog:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead): one line per request without personal data."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if log.isEnabledFor(logging.INFO):
                route = scope.get("route")
                log.info(
                    "%s %s %d %.2fms key=%s",
                    scope["method"],
                    getattr(route, "path", "<unmatched>"),
                    status,
                    (time.perf_counter() - start) * 1000,
                    scope.get("state", {}).get("key_id", "-"),
                )


def create_app(
    candidates: CandidateStore,
    engagement: EngagementStore,
    *,
    programs: Iterable[str] | None = None,
    erasers: Mapping[str, Callable[[str], int]] | None = None,
    clock: Callable[[], float] = time.time,
    key_cache_seconds: float = 10.0,
    fast_paths: bool = True,
) -> FastAPI:
    """The serving app over the given stores.

    programs: known programIds (unknown ones get 404); None accepts any well-formed id.
    erasers:  extra GDPR erasers by name (event queue, delivery ledger…), each `customer_id -> items removed`.
    clock:    epoch seconds; the stores' `now` (tests pin it to check expiry).
    fast_paths: serve the candidate pages through `_FastPages` (embedded stores only); False: FastAPI alone.
    """
    known_programs = frozenset(programs) if programs is not None else None
    extra_erasers = dict(erasers or {})
    verifier = KeyVerifier(engagement, cache_seconds=key_cache_seconds)
    limiter = RateLimiter()
    inline_candidates, inline_engagement = _is_inline(candidates), _is_inline(engagement)

    async def on_candidates(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs) if inline_candidates else await run_in_threadpool(fn, *args, **kwargs)

    async def on_engagement(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs) if inline_engagement else await run_in_threadpool(fn, *args, **kwargs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        # Graceful shutdown: uvicorn has drained in-flight requests; release this thread's store handles.
        for store in (candidates, engagement):
            close = getattr(store, "close", None)
            if callable(close):
                close()

    query_names: dict[int, frozenset[str]] = {}

    async def reject_unknown_query(request: Request) -> None:
        """A misspelt parameter (`minscore=0.8`) must fail loudly, not silently return every score."""
        if not request.query_params:
            return
        route = request.scope.get("route")
        allowed = query_names.get(id(route))
        if allowed is None:  # the documented query parameters (OpenAPI is the contract), computed once per route
            operation = app.openapi()["paths"].get(getattr(route, "path", ""), {}).get(request.method.lower(), {})
            allowed = query_names[id(route)] = frozenset(
                p["name"] for p in operation.get("parameters", []) if p["in"] == "query"
            )
        unknown = [k for k in request.query_params if k not in allowed]
        if unknown:
            raise RequestValidationError(
                [
                    {"loc": ("query", k[:64]), "msg": "unknown query parameter", "type": "extra_forbidden"}
                    for k in unknown
                ]
            )

    app = FastAPI(
        dependencies=[Depends(reject_unknown_query)],
        title="Engage serving API",
        version="1.0.0",
        description="Candidates (GetCandidatesByImpact / ByScore / ByRiskLevel), the in-app inbox, call tasks, "
        "GDPR deletion and API keys.  Every route but /health needs an `X-API-Key`.",
        lifespan=lifespan,
    )
    app.state.engagement = engagement
    app.state.candidates = candidates

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The default echoes the offending input back; drop it (it may be personal data) and keep where and why.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette lists only the first matching route's methods; list every method of this path.
            methods = {
                method
                for route in app.routes
                if isinstance(route, APIRoute) and route.path_regex.match(request.url.path)
                for method in route.methods
            }
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    # -- auth ------------------------------------------------------------------------------------------------------

    async def principal(request: Request, api_key: Annotated[str | None, Security(_api_key_header)]) -> Principal:
        found = verifier.verify(api_key) if inline_engagement else await run_in_threadpool(verifier.verify, api_key)
        if found is None:
            raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "ApiKey"})
        request.state.key_id = found.key_id
        wait = limiter.take(found.key_id, found.rate_per_second, found.burst)
        if wait:
            raise HTTPException(429, "rate limit exceeded for this key", headers={"Retry-After": str(math.ceil(wait))})
        return found

    def require(scope: str) -> Any:
        async def dependency(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not who.has(scope):
                raise HTTPException(403, f"this key lacks the '{scope}' scope")
            return who

        return Depends(dependency)

    def check_program(who: Principal, program: str) -> None:
        if not who.can_read(program):
            raise HTTPException(403, f"this key lacks the 'read:{program}' scope")
        if known_programs is not None and program not in known_programs:
            raise HTTPException(404, "unknown program")

    async def page_response(fn: Callable[..., Page], *args: Any, **kwargs: Any) -> Response:
        json_fn = getattr(candidates, f"{fn.__name__}_json", None)  # the store splices its stored JSON
        try:
            page = await on_candidates(json_fn or fn, *args, now=clock(), **kwargs)
        except ValueError as e:  # an invalid or foreign cursor (the store's message names no value)
            raise HTTPException(400, str(e)) from None
        if isinstance(page, JsonPage):
            return Response(_page_body(page), media_type="application/json")
        return Response(
            orjson.dumps({"items": page.items, "nextCursor": page.next_cursor}), media_type="application/json"
        )

    # -- health ----------------------------------------------------------------------------------------------------

    @app.get(
        "/health",
        response_model=m.Health,
        tags=["operations"],
        responses={422: {"model": m.Problem, "description": "Unknown query parameter"}},
    )
    async def health() -> dict[str, str]:
        """Liveness: no key needed, touches no store."""
        return {"status": "ok"}

    # -- candidate queries -----------------------------------------------------------------------------------------

    @app.get(
        "/v1/programs/{program}/candidates/by-impact",
        response_model=m.CandidatePage,
        responses={**_COMMON, **_E404, **_E400},
        tags=["candidates"],
    )
    async def get_candidates_by_impact(
        program: ProgramId,
        who: Annotated[Principal, Depends(principal)],
        impactLevel: Label,
        refundType: Annotated[str | None, Query(pattern=m.LABEL_PATTERN)] = None,
        minScore: MinScore = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> Response:
        """GetCandidatesByImpact: live candidates of an impact level (GSI1), highest score first, optionally only
        one refund type."""
        check_program(who, program)
        return await page_response(
            candidates.query_by_segment,
            program,
            impactLevel,
            min_score=minScore,
            limit=limit,
            cursor=cursor,
            offer_type=refundType,
        )

    @app.get(
        "/v1/programs/{program}/candidates/by-score",
        response_model=m.CandidatePage,
        responses={**_COMMON, **_E404, **_E400},
        tags=["candidates"],
    )
    async def get_candidates_by_score(
        program: ProgramId,
        who: Annotated[Principal, Depends(principal)],
        offerType: Label,
        minScore: MinScore = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> Response:
        """GetCandidatesByScore: live candidates with an offer type across segments (GSI4), highest score first."""
        check_program(who, program)
        return await page_response(
            candidates.query_by_score, program, offerType, min_score=minScore, limit=limit, cursor=cursor
        )

    @app.get(
        "/v1/programs/{program}/candidates/by-risk-level",
        response_model=m.CandidatePage,
        responses={**_COMMON, **_E404, **_E400},
        tags=["candidates"],
    )
    async def get_candidates_by_risk_level(
        program: ProgramId,
        who: Annotated[Principal, Depends(principal)],
        riskLevel: Label,
        minScore: MinScore = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> Response:
        """GetCandidatesByRiskLevel: live candidates of a risk level (GSI1) at or above minScore, highest first."""
        check_program(who, program)
        return await page_response(
            candidates.query_by_segment, program, riskLevel, min_score=minScore, limit=limit, cursor=cursor
        )

    @app.get(
        "/v1/customers/{customerId}/candidates",
        response_model=m.CustomerCandidates,
        responses=_COMMON,
        tags=["candidates"],
    )
    async def get_customer_candidates(
        customerId: CustomerId, who: Annotated[Principal, Depends(principal)]
    ) -> Response:
        """One customer's live candidates across the programs this key may read (a holdout candidate, in a
        program's control group, is never served)."""
        readable = who.readable_programs
        if readable is not None and not readable:
            raise HTTPException(403, "this key lacks a 'read:<programId>' scope")
        items = await on_candidates(candidates.customer_candidates, customerId, now=clock())
        items = [c for c in items if not c.get("holdout") and (readable is None or c.get("programId") in readable)]
        return Response(orjson.dumps({"customerId": customerId, "items": items}), media_type="application/json")

    # -- in-app inbox ----------------------------------------------------------------------------------------------

    @app.get("/v1/customers/{customerId}/inbox", response_model=m.Inbox, responses=_COMMON, tags=["in-app"])
    async def get_inbox(
        customerId: CustomerId,
        _who: Annotated[Principal, require("inapp")],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """The customer's in-app messages inside their display window, not dismissed."""
        items = await on_engagement(engagement.inbox_messages, customerId, now=clock(), limit=limit)
        return {"customerId": customerId, "items": items}

    async def _set_state(customer_id: str, message_id: str, state: str) -> dict[str, Any]:
        found = await on_engagement(engagement.set_inbox_state, customer_id, message_id, state, now=clock())
        if found is None:
            raise HTTPException(404, "no such message for this customer")
        return found

    MessageId = Annotated[str, Path(pattern=m.ID_PATTERN)]

    @app.post(
        "/v1/customers/{customerId}/inbox/{messageId}/seen",
        response_model=m.InboxMessage,
        responses={**_COMMON, **_E404},
        tags=["in-app"],
    )
    async def mark_seen(
        customerId: CustomerId, messageId: MessageId, _who: Annotated[Principal, require("inapp")]
    ) -> dict[str, Any]:
        """Mark a message seen (it keeps displaying; a dismissed message stays dismissed)."""
        return await _set_state(customerId, messageId, "seen")

    @app.post(
        "/v1/customers/{customerId}/inbox/{messageId}/dismiss",
        response_model=m.InboxMessage,
        responses={**_COMMON, **_E404},
        tags=["in-app"],
    )
    async def dismiss(
        customerId: CustomerId, messageId: MessageId, _who: Annotated[Principal, require("inapp")]
    ) -> dict[str, Any]:
        """Dismiss a message: it is no longer listed."""
        return await _set_state(customerId, messageId, "dismissed")

    # -- call tasks ------------------------------------------------------------------------------------------------

    TaskId = Annotated[str, Path(pattern=m.ID_PATTERN)]

    @app.get(
        "/v1/programs/{program}/call-tasks",
        response_model=m.CallTaskPage,
        responses={**_COMMON, **_E404, **_E400},
        tags=["call tasks"],
    )
    async def list_call_tasks(
        program: ProgramId,
        _who: Annotated[Principal, require("agent")],
        dueBefore: Annotated[int | None, Query(ge=0, le=2**40, description="Only tasks due by then (epoch s)")] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """Claimable call tasks of a program (open, or claimed with an expired claim), earliest due first."""
        if known_programs is not None and program not in known_programs:
            raise HTTPException(404, "unknown program")
        try:
            items, next_cursor = await on_engagement(
                engagement.due_call_tasks, program, due_before=dueBefore, limit=limit, cursor=cursor, now=clock()
            )
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        return {"items": items, "nextCursor": next_cursor}

    @app.get("/v1/call-tasks/{taskId}", response_model=m.CallTask, responses={**_COMMON, **_E404}, tags=["call tasks"])
    async def get_call_task(taskId: TaskId, _who: Annotated[Principal, require("agent")]) -> dict[str, Any]:
        """One call task."""
        task = await on_engagement(engagement.get_call_task, taskId)
        if task is None:
            raise HTTPException(404, "no such call task")
        return task

    async def _task_conflict(task_id: str, what: str) -> HTTPException:
        task = await on_engagement(engagement.get_call_task, task_id)
        if task is None:
            return HTTPException(404, "no such call task")
        return HTTPException(
            409,
            f"cannot {what}: the task is {task['state']}" + (" by another agent" if task["state"] == "claimed" else ""),
        )

    @app.post(
        "/v1/call-tasks/{taskId}/claim",
        response_model=m.CallTask,
        responses={**_COMMON, **_E404, **_E409, **_E400},
        tags=["call tasks"],
    )
    async def claim_call_task(
        taskId: TaskId,
        who: Annotated[Principal, require("agent")],
        body: Annotated[m.ClaimRequest | None, Body()] = None,
    ) -> dict[str, Any]:
        """Claim a task for this key's agent until the claim expires (renewing one's own claim is allowed).
        Atomic: of two agents claiming at once, one gets 200 and the other 409."""
        seconds = (body or m.ClaimRequest()).claimSeconds
        task = await on_engagement(engagement.claim_call_task, taskId, who.key_id, seconds, now=clock())
        if task is None:
            raise await _task_conflict(taskId, "claim")
        return task

    @app.post(
        "/v1/call-tasks/{taskId}/complete",
        response_model=m.CallTask,
        responses={**_COMMON, **_E404, **_E409, **_E400},
        tags=["call tasks"],
    )
    async def complete_call_task(
        taskId: TaskId, body: m.CompleteRequest, who: Annotated[Principal, require("agent")]
    ) -> dict[str, Any]:
        """Complete a task this agent holds (under a live claim) with the call's outcome."""
        task = await on_engagement(engagement.complete_call_task, taskId, who.key_id, body.outcome, now=clock())
        if task is None:
            conflict = await _task_conflict(taskId, "complete")
            if conflict.status_code == 409 and "claimed" in str(conflict.detail):
                current = await on_engagement(engagement.get_call_task, taskId)
                if current and current["claimedBy"] == who.key_id:
                    conflict = HTTPException(409, "cannot complete: your claim expired; claim the task again")
            raise conflict
        return task

    # -- GDPR ------------------------------------------------------------------------------------------------------

    @app.delete("/v1/customers/{customerId}", response_model=m.Deletion, responses=_COMMON, tags=["gdpr"])
    async def delete_customer(customerId: CustomerId, who: Annotated[Principal, require("admin")]) -> dict[str, Any]:
        """Erase a customer: candidates in every program, in-app messages, call tasks and every registered
        eraser; the deletion is recorded first (customerId and time only) so later runs and exports skip them.
        Idempotent."""
        removed = await on_engagement(engagement.delete_customer, customerId, now=clock())
        n_candidates = await on_candidates(candidates.delete_customer, customerId)
        other = {name: await run_in_threadpool(fn, customerId) for name, fn in extra_erasers.items()}
        log.info(
            "gdpr deletion by key=%s: candidates=%d inbox=%d tasks=%d",
            who.key_id,
            n_candidates,
            removed["inboxMessages"],
            removed["callTasks"],
        )
        return {"customerId": customerId, "candidates": n_candidates, **removed, "other": other}

    # -- admin: keys -----------------------------------------------------------------------------------------------

    KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]

    @app.post(
        "/v1/admin/api-keys",
        response_model=m.ApiKeyCreated,
        status_code=201,
        responses={**_COMMON, **_E400},
        tags=["admin"],
    )
    async def create_key(body: m.ApiKeyCreate, _who: Annotated[Principal, require("admin")]) -> dict[str, Any]:
        """Create a key; the response holds the key itself, which is not stored and cannot be shown again."""
        record, key = await on_engagement(
            create_api_key, engagement, body.scopes, body.name, body.ratePerSecond, body.burst, now=clock()
        )
        return record | {"apiKey": key}

    @app.get("/v1/admin/api-keys", response_model=m.ApiKeyList, responses=_COMMON, tags=["admin"])
    async def list_keys(_who: Annotated[Principal, require("admin")]) -> dict[str, Any]:
        """Every key (without hashes)."""
        return {"items": [public_key_record(k) for k in await on_engagement(engagement.list_api_keys)]}

    @app.delete(
        "/v1/admin/api-keys/{keyId}", response_model=m.ApiKeyInfo, responses={**_COMMON, **_E404}, tags=["admin"]
    )
    async def revoke_key(keyId: KeyId, _who: Annotated[Principal, require("admin")]) -> dict[str, Any]:
        """Revoke a key (idempotent): it stops working at once in this process, within seconds elsewhere."""
        await on_engagement(engagement.revoke_api_key, keyId, now=clock())
        verifier.forget(keyId)
        record = await on_engagement(engagement.get_api_key, keyId)
        if record is None:
            raise HTTPException(404, "no such key")
        return public_key_record(record)

    # -- the candidate pages' fast path (see _FastPages) --------------------------------------------------------

    if (
        fast_paths
        and inline_candidates
        and inline_engagement
        and all(hasattr(candidates, q) for q in ("query_by_score_json", "query_by_segment_json"))
    ):
        fast = {  # last path segment -> (label parameter, optional label parameter, store query)
            "by-score": ("offerType", None, candidates.query_by_score_json),
            "by-impact": ("impactLevel", "refundType", candidates.query_by_segment_json),
            "by-risk-level": ("riskLevel", None, candidates.query_by_segment_json),
        }
        api_routes = {
            r.path.rsplit("/", 1)[1]: r
            for r in app.routes
            if isinstance(r, APIRoute) and r.path.startswith("/v1/programs/{program}/candidates/")
        }
        app.add_middleware(
            _FastPages,
            routes={k: (api_routes[k], v) for k, v in fast.items()},
            serve=_fast_page_server(verifier, limiter, known_programs, clock),
        )
    app.add_middleware(_AccessLog)  # outermost: it logs the fast path's requests too
    return app


_PROGRAM_RE = re.compile(m.PROGRAM_PATTERN)
_LABEL_RE = re.compile(m.LABEL_PATTERN)
_CURSOR_RE = re.compile(m.CURSOR_PATTERN)
_SCORE_RE = re.compile(r"[01](\.[0-9]{1,17})?")  # the plain spellings; others (".5", "5e-1") take the slow path
_LIMIT_RE = re.compile(r"[1-9][0-9]{0,2}")


def _fast_page_server(
    verifier: KeyVerifier, limiter: RateLimiter, known_programs: frozenset[str] | None, clock: Callable[[], float]
) -> Callable[..., Any]:
    _header = b"x-api-key"
    _start_headers = [(b"content-type", b"application/json")]

    async def serve(scope: dict, send: Any, program: str, route: APIRoute, spec: tuple[Any, ...]) -> bool:
        """Answer the request and return True, or return False (untouched) to pass it to FastAPI."""
        label_name, option_name, query = spec
        if _PROGRAM_RE.fullmatch(program) is None or (known_programs is not None and program not in known_programs):
            return False
        qs: bytes = scope["query_string"]
        if b"%" in qs or b"+" in qs:  # encoded values: leave decoding to Starlette
            return False
        params: dict[str, str] = {}
        if qs:
            for part in qs.decode("latin-1").split("&"):
                name, eq, value = part.partition("=")
                if not eq or not value or name in params:
                    return False
                params[name] = value
        label = params.pop(label_name, None)
        if label is None or _LABEL_RE.fullmatch(label) is None:
            return False
        option = params.pop(option_name, None) if option_name else None
        if option is not None and _LABEL_RE.fullmatch(option) is None:
            return False
        min_score = params.pop("minScore", None)
        if min_score is not None:
            if _SCORE_RE.fullmatch(min_score) is None or float(min_score) > 1.0:
                return False
        limit = params.pop("limit", None)
        if limit is not None and (_LIMIT_RE.fullmatch(limit) is None or int(limit) > MAX_PAGE):
            return False
        cursor = params.pop("cursor", None)
        if params or (cursor is not None and _CURSOR_RE.fullmatch(cursor) is None):
            return False  # an unknown parameter (422) or a malformed cursor
        key = next((v for k, v in scope["headers"] if k == _header), None)
        who = verifier.verify(key.decode("latin-1")) if key else None
        if who is None or not who.can_read(program):
            return False
        if limiter.take(who.key_id, who.rate_per_second, who.burst):
            return False  # FastAPI answers the 429 (an empty bucket stays empty: nothing is taken twice)
        scope["route"] = route  # for the access log, as routing would have set it
        scope.setdefault("state", {})["key_id"] = who.key_id
        kwargs: dict[str, Any] = {
            "min_score": None if min_score is None else float(min_score),
            "limit": DEFAULT_PAGE if limit is None else int(limit),
            "cursor": cursor,
        }
        if option_name:
            kwargs["offer_type"] = option
        try:
            page = query(program, label, now=clock(), **kwargs)
        except ValueError as e:  # an invalid or foreign cursor: answered here, its token is spent
            await JSONResponse({"detail": str(e)}, status_code=400)(scope, None, send)
            return True
        body = _page_body(page)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), *_start_headers],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True

    return serve
