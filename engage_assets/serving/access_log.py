"""One log line per request without personal data: the route *template*, status, latency and key id, never a path
or query value (customer ids, etc.)."""

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("engage.serving")


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
