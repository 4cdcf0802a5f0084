"""The app's error responses: validation errors without the offending input, HTTP errors with a complete Allow."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path


def path_methods(app: FastAPI, path: str) -> set[str]:
    """The methods of every API route matching the path.  `iter_route_contexts`: since FastAPI 0.137 `app.routes`
    holds included routers as single nodes, not their routes."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.path and compile_path(route.path)[0].match(path):
            methods |= route.methods or set()
    return methods


async def validation_error(_request: Request, exc: Exception) -> Response:
    """422 with where and why of each error.  FastAPI's default echoes the offending input back: dropped here (it
    may be personal data)."""
    assert isinstance(exc, RequestValidationError)  # registered for it only
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def http_error(request: Request, exc: Exception) -> Response:
    """The error's status, detail and headers; a 405 lists every method of the path in Allow (Starlette lists only
    the first matching route's)."""
    assert isinstance(exc, StarletteHTTPException)  # registered for it only
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(sorted(path_methods(request.app, request.url.path)))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
