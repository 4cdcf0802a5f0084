"""The serving API's routes, one `APIRouter` per OpenAPI tag; `ROUTERS` is the order `create_app` includes them in
(the order of the OpenAPI document's paths)."""

from fastapi import APIRouter

from engage_assets.serving.routes import admin, call_tasks, candidates, events, gdpr, inapp, operations

ROUTERS: tuple[APIRouter, ...] = (
    operations.router,
    candidates.router,
    inapp.router,
    call_tasks.router,
    gdpr.router,
    admin.router,
    events.router,
)

__all__ = ["ROUTERS"]
