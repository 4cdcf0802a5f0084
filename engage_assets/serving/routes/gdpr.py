"""Tag `gdpr`: erasing a customer (`admin` scope)."""

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from engage_assets.serving import models as m
from engage_assets.serving.dependencies import Admin, Context
from engage_assets.serving.params import COMMON, CustomerId

log = logging.getLogger("engage.serving")

router = APIRouter(tags=["gdpr"])


@router.delete("/v1/customers/{customerId}", response_model=m.Deletion, responses=COMMON)
async def delete_customer(customerId: CustomerId, who: Admin, context: Context) -> dict[str, Any]:
    """Erase a customer: candidates in every program, in-app messages, call tasks and every registered
    eraser; the deletion is recorded first (customerId and time only) so later runs and exports skip them.
    Idempotent."""
    removed = await context.on_engagement(context.engagement.delete_customer, customerId, now=context.clock())
    n_candidates = await context.on_candidates(context.candidates.delete_customer, customerId)
    other = {name: await run_in_threadpool(fn, customerId) for name, fn in context.erasers.items()}
    log.info(
        "gdpr deletion by key=%s: candidates=%d inbox=%d tasks=%d",
        who.key_id,
        n_candidates,
        removed["inboxMessages"],
        removed["callTasks"],
    )
    return {"customerId": customerId, "candidates": n_candidates, **removed, "other": other}
