"""Tag `operations`: liveness."""

from fastapi import APIRouter

from engage_assets.serving import models as m
from engage_assets.serving.params import E422

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=m.Health, responses=E422)
async def health() -> dict[str, str]:
    """Liveness: no key needed, touches no store."""
    return {"status": "ok"}
