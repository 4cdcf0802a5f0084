"""Tag `in-app`: a customer's in-app inbox (`inapp` scope)."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from engage_assets.serving import models as m
from engage_assets.serving.context import ServingContext
from engage_assets.serving.dependencies import Context, InApp
from engage_assets.serving.params import COMMON, E404, CustomerId, MessageId

router = APIRouter(tags=["in-app"])


@router.get("/v1/customers/{customerId}/inbox", response_model=m.Inbox, responses=COMMON)
async def get_inbox(
    customerId: CustomerId,
    _who: InApp,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """The customer's in-app messages inside their display window, not dismissed."""
    engagement = context.engagement
    items = await context.on_engagement(engagement.inbox_messages, customerId, now=context.clock(), limit=limit)
    return {"customerId": customerId, "items": items}


async def set_state(context: ServingContext, customer_id: str, message_id: str, state: str) -> dict[str, Any]:
    """Set a message's state; 404 when the customer has no such message."""
    found = await context.on_engagement(
        context.engagement.set_inbox_state, customer_id, message_id, state, now=context.clock()
    )
    if found is None:
        raise HTTPException(404, "no such message for this customer")
    return found


@router.post(
    "/v1/customers/{customerId}/inbox/{messageId}/seen",
    response_model=m.InboxMessage,
    responses={**COMMON, **E404},
)
async def mark_seen(customerId: CustomerId, messageId: MessageId, _who: InApp, context: Context) -> dict[str, Any]:
    """Mark a message seen (it keeps displaying; a dismissed message stays dismissed)."""
    return await set_state(context, customerId, messageId, "seen")


@router.post(
    "/v1/customers/{customerId}/inbox/{messageId}/dismiss",
    response_model=m.InboxMessage,
    responses={**COMMON, **E404},
)
async def dismiss(customerId: CustomerId, messageId: MessageId, _who: InApp, context: Context) -> dict[str, Any]:
    """Dismiss a message: it is no longer listed."""
    return await set_state(context, customerId, messageId, "dismissed")
