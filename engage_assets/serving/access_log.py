"""One log line per request without personal data: the route *template*, status, latency and key id, never a path
or query value (customer ids, etc.).

The app logs its own requests (`AccessLog`), and it also makes the server's access log safe, whatever command
starts it: uvicorn started without `--no-access-log` writes `"GET /v1/customers/<id>/candidates?..." 200` to its
`uvicorn.access` logger, so `create_app` installs `RouteTemplates` on that logger, a filter that rewrites each
line's path to the template of the route it matches (`/v1/customers/{customerId}/candidates`, `<unmatched>` for
none) and drops the query string.  Other servers' access logs (gunicorn's `gunicorn.access`, a proxy's) are theirs
to configure.
"""

import logging
import time
from collections.abc import Sequence
from urllib.parse import unquote

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("engage.serving")
UVICORN_ACCESS = "uvicorn.access"
UNMATCHED = "<unmatched>"


class RouteTemplates(logging.Filter):
    """Rewrites uvicorn's access-log records (`'%s - "%s %s HTTP/%s" %d'`: client, method, path with query, HTTP
    version, status) so the path is its route's template and the query is gone; keeps every line."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        super().__init__()
        self.routes = list(routes)
        # Since FastAPI 0.137 `app.routes` holds included routers as single nodes: their routes, with full paths.
        paths = dict.fromkeys(r.path for r in iter_route_contexts(self.routes) if r.path)
        self.templates = [(compile_path(path)[0], path) for path in paths]

    def template(self, path: str) -> str:
        """The template of the first route the path matches (any method), else `<unmatched>`."""
        path = unquote(path.partition("?")[0])
        return next((template for regex, template in self.templates if regex.match(path)), UNMATCHED)

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's path argument (every record is kept)."""
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], self.template(args[2]), args[3], args[4])
        return True


def redact_uvicorn_access_log(routes: Sequence[BaseRoute]) -> RouteTemplates:
    """Install `RouteTemplates` for these routes on uvicorn's access logger, replacing one installed before (one app
    per server process; tests build many)."""
    logger = logging.getLogger(UVICORN_ACCESS)
    for old in [f for f in logger.filters if isinstance(f, RouteTemplates)]:
        logger.removeFilter(old)
    installed = RouteTemplates(routes)
    logger.addFilter(installed)
    return installed


class AccessLog:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead).  Outermost, so it logs the fast path's requests too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; log it once answered (or failed: status 500)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
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
