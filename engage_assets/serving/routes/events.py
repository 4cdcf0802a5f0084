"""Tag `events`: event ingest (`ingest` scope), EventBridge's PutEvents over HTTP.

`POST /v1/events` takes a PutEvents request (`{"Entries": [...]}`, 1-10 entries, 256 KiB in all) and answers as
PutEvents does: 200 with one result per entry (`EventId`, or `ErrorCode` and `ErrorMessage`) and `FailedEntryCount`;
a request over the limits is a 400 and enqueues nothing.  Accepted entries become the envelope an EventBridge target
receives and go to the app's event source in one `send`.  Which checks happen here and which in the consumer:
`engage_assets.serving.ingest`.  Logs carry the key id and counts, never an event (events carry customer ids).
"""

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from engage_assets.domain.events import PutEventsRequestError
from engage_assets.serving import ingest
from engage_assets.serving import models as m
from engage_assets.serving.dependencies import Context, Ingest
from engage_assets.serving.params import COMMON, Responses

log = logging.getLogger("engage.serving")

router = APIRouter(tags=["events"])

E400_LIMITS: Responses = {
    400: {"model": m.Problem, "description": "Over PutEvents' limits: no entries, more than 10, or over 256 KiB"}
}
E503: Responses = {
    503: {"model": m.Problem, "description": "Event ingest is not configured, or the event queue is unavailable"}
}


@router.post("/v1/events", response_model=m.PutEventsResponse, responses={**COMMON, **E400_LIMITS, **E503})
async def put_events(body: m.PutEventsRequest, who: Ingest, context: Context) -> dict[str, Any]:
    """PutEvents: publish up to 10 events.  Each entry is checked (its fields, `Detail` a JSON object, and the event
    itself: a known DetailType with its required fields and types) and answered on its own; the accepted ones are
    enqueued together, each with the `EventId` its consumers see.  An entry failed with InternalFailure may be
    retried; delivery is at least once."""
    source = context.events
    if source is None:
        raise HTTPException(503, "event ingest not configured")
    try:
        prepared = ingest.prepare(body.Entries, datetime.fromtimestamp(context.clock(), UTC))
    except PutEventsRequestError as e:
        raise HTTPException(400, str(e)) from None
    try:
        response = await run_in_threadpool(ingest.enqueue, source, prepared)
    except Exception as e:  # the source's own failure (network, a locked file): the client may retry
        log.warning("event ingest by key=%s: the event queue failed (%s)", who.key_id, type(e).__name__)
        raise HTTPException(503, "the event queue is unavailable; retry later", headers={"Retry-After": "1"}) from None
    failed = response["FailedEntryCount"]
    log.info("event ingest by key=%s: accepted=%d failed=%d", who.key_id, len(prepared.results) - failed, failed)
    return response
