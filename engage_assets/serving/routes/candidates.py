"""Tag `candidates`: GetCandidatesByImpact / ByScore / ByRiskLevel pages of a program, the generic page of any program
(by segment or by offer type, no code per program), win-back's by churn reason and date, and one customer's view.

Reads go through the store's index queries only (query_by_segment / query_by_score / query_by_churn_reason /
customer_candidates), never a scan; the stores filter expired candidates on every read.  Pages are serialised with orjson straight from the
stored records (the response model still documents them in OpenAPI): validating 50 records through pydantic per
request would cost more than the query.  The three page routes also have a fast path (`serving.fast_pages`) that
answers plainly valid requests exactly as these do.
"""

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from engage_assets.serving import models as m
from engage_assets.serving.auth import Principal
from engage_assets.serving.context import ServingContext
from engage_assets.serving.dependencies import Caller, Context
from engage_assets.serving.fast_pages import page_body
from engage_assets.serving.params import (
    COMMON,
    DEFAULT_PAGE,
    E400,
    E404,
    Cursor,
    CustomerId,
    Label,
    Limit,
    MinScore,
    ProgramId,
)
from resources.store.base import JsonPage, Page

router = APIRouter(tags=["candidates"])

PAGE_RESPONSES = {**COMMON, **E404, **E400}
GENERIC_RESPONSES = {
    **PAGE_RESPONSES,
    400: {"model": m.Problem, "description": "Neither or both of segment and offerType, or an invalid cursor"},
}


def check_program(context: ServingContext, who: Principal, program: str) -> None:
    """403 unless the key may read the program, then 404 for an unknown program."""
    if not who.can_read(program):
        raise HTTPException(403, f"this key lacks the 'read:{program}' scope")
    context.check_known(program)


async def page_response(context: ServingContext, fn: Callable[..., Page], *args: Any, **kwargs: Any) -> Response:
    """A page of `fn(*args, now=clock(), **kwargs)` as JSON; the store's `<query>_json` variant when it has one
    (it splices its stored JSON).  An invalid or foreign cursor is a 400 (the store's message names no value)."""
    json_fn = getattr(context.candidates, f"{fn.__name__}_json", None)
    try:
        page = await context.on_candidates(json_fn or fn, *args, now=context.clock(), **kwargs)
    except ValueError as e:
        raise HTTPException(400, str(e)) from None
    if isinstance(page, JsonPage):
        return Response(page_body(page), media_type="application/json")
    return Response(orjson.dumps({"items": page.items, "nextCursor": page.next_cursor}), media_type="application/json")


@router.get("/v1/programs/{program}/candidates/by-impact", response_model=m.CandidatePage, responses=PAGE_RESPONSES)
async def get_candidates_by_impact(
    program: ProgramId,
    who: Caller,
    context: Context,
    impactLevel: Label,
    refundType: Annotated[str | None, Query(pattern=m.LABEL_PATTERN)] = None,
    minScore: MinScore = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> Response:
    """GetCandidatesByImpact: live candidates of an impact level (GSI1), highest score first, optionally only
    one refund type."""
    check_program(context, who, program)
    return await page_response(
        context,
        context.candidates.query_by_segment,
        program,
        impactLevel,
        min_score=minScore,
        limit=limit,
        cursor=cursor,
        offer_type=refundType,
    )


@router.get("/v1/programs/{program}/candidates/by-score", response_model=m.CandidatePage, responses=PAGE_RESPONSES)
async def get_candidates_by_score(
    program: ProgramId,
    who: Caller,
    context: Context,
    offerType: Label,
    minScore: MinScore = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> Response:
    """GetCandidatesByScore: live candidates with an offer type across segments (GSI4), highest score first."""
    check_program(context, who, program)
    return await page_response(
        context, context.candidates.query_by_score, program, offerType, min_score=minScore, limit=limit, cursor=cursor
    )


@router.get("/v1/programs/{program}/candidates/by-risk-level", response_model=m.CandidatePage, responses=PAGE_RESPONSES)
async def get_candidates_by_risk_level(
    program: ProgramId,
    who: Caller,
    context: Context,
    riskLevel: Label,
    minScore: MinScore = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> Response:
    """GetCandidatesByRiskLevel: live candidates of a risk level (GSI1) at or above minScore, highest first."""
    check_program(context, who, program)
    return await page_response(
        context, context.candidates.query_by_segment, program, riskLevel, min_score=minScore, limit=limit, cursor=cursor
    )


@router.get("/v1/programs/{program}/candidates", response_model=m.CandidatePage, responses=GENERIC_RESPONSES)
async def get_candidates(
    program: ProgramId,
    who: Caller,
    context: Context,
    segment: Annotated[str | None, Query(pattern=m.LABEL_PATTERN, description="A segment (or offerType)")] = None,
    offerType: Annotated[str | None, Query(pattern=m.LABEL_PATTERN, description="An offer type (or segment)")] = None,
    minScore: MinScore = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> Response:
    """Any program's live candidates, with no route of its own: those of one `segment`, or those of one `offerType`
    across segments; exactly one of the two.  Highest score first."""
    check_program(context, who, program)
    if (segment is None) == (offerType is None):
        raise HTTPException(400, "give exactly one of segment and offerType")
    query, label = (
        (context.candidates.query_by_segment, segment)
        if segment is not None
        else (context.candidates.query_by_score, offerType)
    )
    return await page_response(context, query, program, label, min_score=minScore, limit=limit, cursor=cursor)


@router.get(
    "/v1/programs/{program}/candidates/by-churn-reason", response_model=m.CandidatePage, responses=PAGE_RESPONSES
)
async def get_candidates_by_churn_reason(
    program: ProgramId,
    who: Caller,
    context: Context,
    churnReason: Annotated[str, Query(pattern=m.LABEL_PATTERN, description="The churn reason, e.g. price")],
    since: Annotated[date | None, Query(description="Only partitions on or after this date (YYYY-MM-DD)")] = None,
    minScore: MinScore = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> Response:
    """Live candidates whose churn reason is `churnReason` (win-back's GSI5, Program:ChurnReason:Date): newest
    partition first, highest score first within a partition."""
    check_program(context, who, program)
    return await page_response(
        context,
        context.candidates.query_by_churn_reason,
        program,
        churnReason,
        since_date=since,
        min_score=minScore,
        limit=limit,
        cursor=cursor,
    )


@router.get("/v1/customers/{customerId}/candidates", response_model=m.CustomerCandidates, responses=COMMON)
async def get_customer_candidates(customerId: CustomerId, who: Caller, context: Context) -> Response:
    """One customer's live candidates across the programs this key may read (a holdout candidate, in a
    program's control group, is never served)."""
    readable = who.readable_programs
    if readable is not None and not readable:
        raise HTTPException(403, "this key lacks a 'read:<programId>' scope")
    items = await context.on_candidates(context.candidates.customer_candidates, customerId, now=context.clock())
    items = [c for c in items if not c.get("holdout") and (readable is None or c.get("programId") in readable)]
    return Response(orjson.dumps({"customerId": customerId, "items": items}), media_type="application/json")
