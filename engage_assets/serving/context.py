"""What the routes share: the stores, the known programs, the erasers, the clock, the key verifier, the rate
limiter, the event source (ingest) and the outcome webhooks' parts, in one `ServingContext` kept on `app.state.serving` and handed to the routes by `Depends(get_context)`.

SQLite calls run inline on the event loop (a keyset page is ~0.2 ms, a thread hop costs more); network-bound
backends (DynamoDB) run in the thread pool: `on_candidates` / `on_engagement` choose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from engage_assets.serving.auth import KeyVerifier, RateLimiter
from engage_assets.serving.webhooks import Webhooks
from resources.engagement.base import EngagementStore
from resources.engagement.sqlite import SqliteEngagementStore
from resources.events.base import EventSource
from resources.store.base import CandidateStore
from resources.store.sqlite import SqliteCandidateStore

T = TypeVar("T")


def is_inline(store: object) -> bool:
    """Whether the store's calls are cheap enough to run on the event loop (the embedded SQLite stores)."""
    return isinstance(store, (SqliteCandidateStore, SqliteEngagementStore))


@dataclass
class ServingContext:
    """The app's shared state (one per `create_app`)."""

    candidates: CandidateStore
    engagement: EngagementStore
    known_programs: frozenset[str] | None  # None: any well-formed programId
    erasers: dict[str, Callable[[str], int]]  # extra GDPR erasers by name: customer_id -> items removed
    verifier: KeyVerifier
    clock: Callable[[], float] = time.time
    events: EventSource | None = None  # where POST /v1/events sends; None: ingest not configured (503)
    webhooks: Webhooks | None = None  # the outcome webhooks' stores and SNS verifier; None: their routes are absent
    limiter: RateLimiter = field(default_factory=RateLimiter)
    inline_candidates: bool = field(init=False)
    inline_engagement: bool = field(init=False)
    # Per route (by id): its documented query parameter names, computed once from OpenAPI (reject_unknown_query).
    query_names: dict[int, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inline_candidates = is_inline(self.candidates)
        self.inline_engagement = is_inline(self.engagement)

    async def on_candidates(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, a candidate-store call: inline for SQLite, else in the thread pool."""
        return fn(*args, **kwargs) if self.inline_candidates else await run_in_threadpool(fn, *args, **kwargs)

    async def on_engagement(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, an engagement-store call: inline for SQLite, else in the thread pool."""
        return fn(*args, **kwargs) if self.inline_engagement else await run_in_threadpool(fn, *args, **kwargs)

    def check_known(self, program: str) -> None:
        """404 for a program that is not configured (when the app was given the list)."""
        if self.known_programs is not None and program not in self.known_programs:
            raise HTTPException(404, "unknown program")


def context_of(request: Request) -> ServingContext:
    """The ServingContext of the request's app."""
    context: ServingContext = request.app.state.serving
    return context


async def get_context(request: Request) -> ServingContext:
    """The dependency that hands a route its app's ServingContext.  `async` on purpose: FastAPI runs a plain `def`
    dependency in the thread pool, a hop that doubled the cost of every route that is not on the fast path."""
    return context_of(request)
