"""The routes' dependencies: the ServingContext, the calling key (verified and rate-limited), scope checks, and
the app-wide refusal of undocumented query parameters."""

import math
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader

from engage_assets.serving.auth import Principal, TooManyInvalidKeys
from engage_assets.serving.context import ServingContext, context_of, get_context

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`ek_<keyId>_<secret>`")

Context = Annotated[ServingContext, Depends(get_context)]


async def principal(request: Request, api_key: Annotated[str | None, Security(api_key_header)]) -> Principal:
    """The calling key: 401 without a valid one, 429 once its rate is spent or once this client has presented too
    many invalid keys.  Its id goes on the request's state for the access log (the only caller identity logged).  The
    context is read from the request, not depended on: every dependency FastAPI solves costs each request (this one
    runs on every call)."""
    context = context_of(request)
    authenticate = context.verifier.authenticate
    try:
        if context.inline_engagement:
            found = authenticate(request.scope, api_key)
        else:
            found = await run_in_threadpool(authenticate, request.scope, api_key)
    except TooManyInvalidKeys as e:
        retry = str(math.ceil(e.retry_after))
        raise HTTPException(429, "too many invalid API keys from this client", headers={"Retry-After": retry}) from None
    if found is None:
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "ApiKey"})
    request.state.key_id = found.key_id
    wait = context.limiter.take(found.key_id, found.rate_per_second, found.burst)
    if wait:
        raise HTTPException(429, "rate limit exceeded for this key", headers={"Retry-After": str(math.ceil(wait))})
    return found


class RequireScope:
    """A dependency: the calling key, which must hold `scope` (else 403)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, who: Annotated[Principal, Depends(principal)]) -> Principal:
        """The principal, checked."""
        if not who.has(self.scope):
            raise HTTPException(403, f"this key lacks the '{self.scope}' scope")
        return who


Caller = Annotated[Principal, Depends(principal)]  # any valid key; the candidate routes check read scopes
Agent = Annotated[Principal, Depends(RequireScope("agent"))]
InApp = Annotated[Principal, Depends(RequireScope("inapp"))]
Admin = Annotated[Principal, Depends(RequireScope("admin"))]
Ingest = Annotated[Principal, Depends(RequireScope("ingest"))]


async def reject_unknown_query(request: Request) -> None:
    """A misspelt parameter (`minscore=0.8`) must fail loudly, not silently return every score."""
    if not request.query_params:
        return
    context = context_of(request)
    route = request.scope.get("route")
    allowed = context.query_names.get(id(route))
    if allowed is None:  # the documented query parameters (OpenAPI is the contract), computed once per route
        paths = request.app.openapi()["paths"]
        operation = paths.get(getattr(route, "path", ""), {}).get(request.method.lower(), {})
        allowed = context.query_names[id(route)] = frozenset(
            p["name"] for p in operation.get("parameters", []) if p["in"] == "query"
        )
    unknown = [k for k in request.query_params if k not in allowed]
    if unknown:
        raise RequestValidationError(
            [{"loc": ("query", k[:64]), "msg": "unknown query parameter", "type": "extra_forbidden"} for k in unknown]
        )
