"""Serving API: `create_app(candidate_store, engagement_store)` (FastAPI, in `engage_assets.serving.app`, its routes
one router per OpenAPI tag under `engage_assets.serving.routes`) and `ensure_demo_key(settings)`.

Run it with `make serve` (uvicorn over the embedded store at ENGAGE_HOME); see `engage_assets.serving.server`.
"""

from engage_assets.serving.demo_key import DEMO_SCOPES, ensure_demo_key

__all__ = ["DEMO_SCOPES", "ensure_demo_key"]
