"""Tag `admin`: API keys (`admin` scope): create (the key is shown once), list, revoke."""

from typing import Any

from fastapi import APIRouter, HTTPException

from engage_assets.serving import models as m
from engage_assets.serving.auth import create_api_key, public_key_record
from engage_assets.serving.dependencies import Admin, Context
from engage_assets.serving.params import COMMON, E400, E404, KeyId

router = APIRouter(tags=["admin"])


@router.post("/v1/admin/api-keys", response_model=m.ApiKeyCreated, status_code=201, responses={**COMMON, **E400})
async def create_key(body: m.ApiKeyCreate, _who: Admin, context: Context) -> dict[str, Any]:
    """Create a key; the response holds the key itself, which is not stored and cannot be shown again."""
    record, key = await context.on_engagement(
        create_api_key,
        context.engagement,
        body.scopes,
        body.name,
        body.ratePerSecond,
        body.burst,
        now=context.clock(),
    )
    return record | {"apiKey": key}


@router.get("/v1/admin/api-keys", response_model=m.ApiKeyList, responses=COMMON)
async def list_keys(_who: Admin, context: Context) -> dict[str, Any]:
    """Every key (without hashes)."""
    return {"items": [public_key_record(k) for k in await context.on_engagement(context.engagement.list_api_keys)]}


@router.delete("/v1/admin/api-keys/{keyId}", response_model=m.ApiKeyInfo, responses={**COMMON, **E404})
async def revoke_key(keyId: KeyId, _who: Admin, context: Context) -> dict[str, Any]:
    """Revoke a key (idempotent): it stops working at once in this process, within seconds elsewhere."""
    await context.on_engagement(context.engagement.revoke_api_key, keyId, now=context.clock())
    context.verifier.forget(keyId)
    record = await context.on_engagement(context.engagement.get_api_key, keyId)
    if record is None:
        raise HTTPException(404, "no such key")
    return public_key_record(record)
