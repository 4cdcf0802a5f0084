"""Tag `call tasks`: the agents' call queue (`agent` scope): list, list one's assigned tasks, read, claim (atomic; an
assigned task only by its assignee), complete."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query

from engage_assets.serving import models as m
from engage_assets.serving.context import ServingContext
from engage_assets.serving.dependencies import Agent, Context
from engage_assets.serving.params import COMMON, DEFAULT_PAGE, E400, E404, E409, Cursor, Limit, ProgramId, TaskId

router = APIRouter(tags=["call tasks"])

DueBefore = Annotated[int | None, Query(ge=0, le=2**40, description="Only tasks due by then (epoch s)")]


@router.get("/v1/programs/{program}/call-tasks", response_model=m.CallTaskPage, responses={**COMMON, **E404, **E400})
async def list_call_tasks(
    program: ProgramId,
    _who: Agent,
    context: Context,
    dueBefore: DueBefore = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Claimable call tasks of a program (open, or claimed with an expired claim), earliest due first."""
    context.check_known(program)
    try:
        items, next_cursor = await context.on_engagement(
            context.engagement.due_call_tasks,
            program,
            due_before=dueBefore,
            limit=limit,
            cursor=cursor,
            now=context.clock(),
        )
    except ValueError as e:
        raise HTTPException(400, str(e)) from None
    return {"items": items, "nextCursor": next_cursor}


@router.get(
    "/v1/programs/{program}/call-tasks/assigned", response_model=m.CallTaskPage, responses={**COMMON, **E404, **E400}
)
async def list_assigned_call_tasks(
    program: ProgramId, who: Agent, context: Context, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> dict[str, Any]:
    """This agent's assigned call tasks of a program (the call assignment job's), not completed, earliest due first."""
    context.check_known(program)
    try:
        items, next_cursor = await context.on_engagement(
            context.engagement.assigned_call_tasks, program, who.key_id, limit=limit, cursor=cursor
        )
    except ValueError as e:
        raise HTTPException(400, str(e)) from None
    return {"items": items, "nextCursor": next_cursor}


@router.get("/v1/call-tasks/{taskId}", response_model=m.CallTask, responses={**COMMON, **E404})
async def get_call_task(taskId: TaskId, _who: Agent, context: Context) -> dict[str, Any]:
    """One call task."""
    task = await context.on_engagement(context.engagement.get_call_task, taskId)
    if task is None:
        raise HTTPException(404, "no such call task")
    return task


async def task_conflict(context: ServingContext, task_id: str, what: str) -> HTTPException:
    """Why `what` failed on the task: 404 if it does not exist, else 409 naming its state."""
    task = await context.on_engagement(context.engagement.get_call_task, task_id)
    if task is None:
        return HTTPException(404, "no such call task")
    if task["state"] == "open" and task.get("assignedTo") and what == "claim":
        return HTTPException(409, "cannot claim: the task is assigned to another agent")
    by_another = " by another agent" if task["state"] == "claimed" else ""
    return HTTPException(409, f"cannot {what}: the task is {task['state']}{by_another}")


@router.post("/v1/call-tasks/{taskId}/claim", response_model=m.CallTask, responses={**COMMON, **E404, **E409, **E400})
async def claim_call_task(
    taskId: TaskId,
    who: Agent,
    context: Context,
    body: Annotated[m.ClaimRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Claim a task for this key's agent until the claim expires (renewing one's own claim is allowed).
    Atomic: of two agents claiming at once, one gets 200 and the other 409."""
    seconds = (body or m.ClaimRequest()).claimSeconds
    engagement = context.engagement
    task = await context.on_engagement(engagement.claim_call_task, taskId, who.key_id, seconds, now=context.clock())
    if task is None:
        raise await task_conflict(context, taskId, "claim")
    return task


@router.post(
    "/v1/call-tasks/{taskId}/complete", response_model=m.CallTask, responses={**COMMON, **E404, **E409, **E400}
)
async def complete_call_task(taskId: TaskId, body: m.CompleteRequest, who: Agent, context: Context) -> dict[str, Any]:
    """Complete a task this agent holds (under a live claim) with the call's outcome."""
    engagement = context.engagement
    task = await context.on_engagement(
        engagement.complete_call_task, taskId, who.key_id, body.outcome, now=context.clock()
    )
    if task is None:
        conflict = await task_conflict(context, taskId, "complete")
        if conflict.status_code == 409 and "claimed" in str(conflict.detail):
            current = await context.on_engagement(engagement.get_call_task, taskId)
            if current and current["claimedBy"] == who.key_id:
                conflict = HTTPException(409, "cannot complete: your claim expired; claim the task again")
        raise conflict
    return task
