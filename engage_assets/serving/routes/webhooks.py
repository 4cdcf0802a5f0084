"""Tag `webhooks`: outcomes the providers report, in their own shapes (what is done with them:
`engage_assets.serving.webhooks`).

- `POST /v1/webhooks/ses`: an SNS HTTP(S) subscription to the topic SES publishes events to (delivery, open, click,
  bounce, complaint, subscription …).  The body is the SNS message as SNS posts it (JSON sent as text/plain); its
  signature is verified (`engage_assets.serving.sns`), a `SubscriptionConfirmation` is confirmed, an
  `UnsubscribeConfirmation` acknowledged, and a `Notification`'s `Message` read as one SES event.  SNS cannot send
  headers, so besides `X-API-Key` the key may come as the password of HTTP Basic credentials in the subscription's
  URL (`https://webhook:<key>@host/v1/webhooks/ses`).
- `POST /v1/webhooks/receipts/{channel}` (`sms`, `push`): SNS delivery-status records, one JSON object or an array of
  them (a log subscription's batch), with `X-API-Key`.  Every record is read before any is applied: one bad record
  refuses the request.

Every route needs a key with the `ingest` scope.  A report seen before (the same SNS MessageId, the same receipt)
answers `duplicate` and changes nothing.  Bad input is a 4xx with the reason and records nothing: 400 for JSON that
does not parse or lacks what the provider always sends, or an unknown type; 403 for a signature that does not verify,
a topic not subscribed or a certificate URL that is not SNS's; 413 over 256 KiB.  Logs carry the key id, kinds and
counts, never an address or a message id.
"""

import base64
import binascii
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from engage_assets.domain.outcomes import (
    OutcomeError,
    loads_json,
    loads_object,
    parse_delivery_receipt,
    parse_ses_event,
    parse_sns_envelope,
)
from engage_assets.serving import models as m
from engage_assets.serving.auth import Principal
from engage_assets.serving.context import context_of
from engage_assets.serving.dependencies import principal
from engage_assets.serving.params import COMMON, Responses
from engage_assets.serving.sns import SnsRejected
from engage_assets.serving.webhooks import MAX_BODY, Webhooks, apply_outcome

log = logging.getLogger("engage.serving")

router = APIRouter(tags=["webhooks"])

ERRORS: Responses = {
    400: {"model": m.Problem, "description": "Not JSON, not the provider's shape, or an unknown type"},
    403: {"model": m.Problem, "description": "The key lacks `ingest`, or the SNS signature, topic or certificate URL"},
    413: {"model": m.Problem, "description": "Over 256 KiB"},
    503: {"model": m.Problem, "description": "Outcome webhooks are not configured"},
}


def _presented_key(request: Request) -> str | None:
    """The API key: `X-API-Key`, else the password of HTTP Basic credentials (what an SNS subscription URL carries)."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


async def webhook_caller(request: Request) -> Principal:
    """The calling key (`X-API-Key` or Basic), which must hold `ingest`."""
    who = await principal(request, _presented_key(request))
    if not who.has("ingest"):
        raise HTTPException(403, "this key lacks the 'ingest' scope")
    return who


Caller = Annotated[Principal, Depends(webhook_caller)]


def _hooks(request: Request) -> Webhooks:
    hooks = context_of(request).webhooks
    if hooks is None:
        raise HTTPException(503, "outcome webhooks are not configured")
    return hooks


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, "the body is over 256 KiB")
    return body


@router.post("/v1/webhooks/ses", response_model=m.WebhookResult, responses={**COMMON, **ERRORS})
async def ses_events(request: Request, who: Caller) -> dict[str, Any]:
    """One SNS message from the SES event topic: verified, then confirmed (a subscription), acknowledged (an
    unsubscribe) or recorded (an SES event)."""
    hooks = _hooks(request)
    if hooks.sns is None:
        raise HTTPException(503, "the SES webhook has no SNS topics configured")
    try:
        message = parse_sns_envelope(await _body(request))
        await run_in_threadpool(hooks.sns.verify, message)
        if message["Type"] == "SubscriptionConfirmation":
            await run_in_threadpool(hooks.sns.confirm, message)
            log.info("ses webhook by key=%s: subscription confirmed", who.key_id)
            return {"status": "confirmed", "recorded": 0, "duplicates": 0}
        if message["Type"] == "UnsubscribeConfirmation":
            log.warning("ses webhook by key=%s: the topic unsubscribed this endpoint", who.key_id)
            return {"status": "acknowledged", "recorded": 0, "duplicates": 0}
        outcome = parse_ses_event(loads_object(message["Message"], "the SNS Message"), message["MessageId"])
    except OutcomeError as e:
        raise HTTPException(400, str(e)) from None
    except SnsRejected as e:
        raise HTTPException(e.status, e.reason) from None
    new = await run_in_threadpool(apply_outcome, hooks, outcome)
    log.info("ses webhook by key=%s: %s %s", who.key_id, outcome.kind, "recorded" if new else "duplicate")
    return {"status": "recorded" if new else "duplicate", "recorded": int(new), "duplicates": int(not new)}


@router.post("/v1/webhooks/receipts/{channel}", response_model=m.WebhookResult, responses={**COMMON, **ERRORS})
async def delivery_receipts(request: Request, channel: Literal["sms", "push"], who: Caller) -> dict[str, Any]:
    """SNS delivery-status records of SMS or push messages: one object, or an array of up to 500."""
    hooks = _hooks(request)
    body = await _body(request)
    try:
        records = loads_json(body, "the body")
        if isinstance(records, dict):
            records = [records]
        if not isinstance(records, list) or not records or len(records) > 500:
            raise OutcomeError("the body is not a receipt object or an array of 1 to 500 of them")
        outcomes = [parse_delivery_receipt(r if isinstance(r, dict) else {}, channel) for r in records]
    except OutcomeError as e:
        raise HTTPException(400, str(e)) from None
    new = [await run_in_threadpool(apply_outcome, hooks, o) for o in outcomes]
    recorded = sum(new)
    log.info("%s receipts by key=%s: recorded=%d duplicates=%d", channel, who.key_id, recorded, len(new) - recorded)
    status = "recorded" if recorded else "duplicate"
    return {"status": status, "recorded": recorded, "duplicates": len(new) - recorded}
