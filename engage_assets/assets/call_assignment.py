"""`<group>_call_assignment`: the spec's "Personal Call Campaign (Segment 1)" (churn prevention, Monday 09:00 UTC:
"assign critical risk customers to account managers; schedule calls throughout the week").

For a program with `callAssignment`, its open call tasks that no one was assigned are assigned to the configured
account managers, earliest due first, each to the manager with the fewest open assigned tasks
(`domain.call_assignment`).  Each assignment is one conditional write in the engagement store, so a task is never
assigned twice, even when two runs overlap (the loser's write fails and is counted as `already_assigned`).  An
assigned task is listed for its manager (`GET /v1/programs/{program}/call-tasks/assigned`) and only they may claim
it.  The schedule runs by default when the program is enabled.
"""
# No `from __future__ import annotations`: Dagster reads the op's context annotation at definition time.

import dagster as dg
from pydantic import Field

from engage_assets.assets.cleanup import cleanup_clock, weekly_schedule
from engage_assets.domain.call_assignment import balance_assignments
from engage_assets.domain.config import ProgramConfig
from resources.engagement.base import EngagementStore

PAGE = 1000


class AssignmentConfig(dg.Config):
    as_of: str | None = Field(default=None, description="The assignment clock (ISO 8601, UTC if naive); default: now.")


def assign_call_tasks(program: ProgramConfig, engagement: EngagementStore, now: float) -> dict[str, int]:
    """Assign every open unassigned task of the program, a page at a time; the counts per outcome and the managers'
    open loads after the run (`load/<manager>`)."""
    assert program.callAssignment is not None
    managers = program.callAssignment.accountManagers
    assigned = lost = 0
    while tasks := engagement.unassigned_call_tasks(program.programId, limit=PAGE):
        loads = engagement.assigned_open_counts(program.programId)
        plan = balance_assignments([t["taskId"] for t in tasks], managers, loads)
        for task_id, manager in plan.items():
            if engagement.assign_call_task(task_id, manager, now=now):
                assigned += 1
            else:
                lost += 1  # assigned by another run meanwhile, or completed: never twice
        if len(tasks) < PAGE:
            break
    loads = engagement.assigned_open_counts(program.programId)
    return {"assigned": assigned, "already_assigned": lost, **{f"load/{m}": loads.get(m, 0) for m in managers}}


def build_call_assignment(program: ProgramConfig) -> tuple[dg.JobDefinition, dg.ScheduleDefinition] | None:
    """The job and its schedule (`callAssignment.schedule`, UTC), or None for a program without `callAssignment`."""
    if program.callAssignment is None:
        return None
    g = program.group

    @dg.op(
        name=f"{g}__assign_call_tasks",
        out=dg.Out(dg.Nothing),
        tags={"engage/program": program.programId},
        description="Assign the program's open unassigned call tasks to its account managers, balancing their load.",
    )
    def assign_op(context: dg.OpExecutionContext, config: AssignmentConfig, engagement: EngagementStore) -> dg.Output:
        counts = assign_call_tasks(program, engagement, cleanup_clock(config.as_of).timestamp())
        context.log.info(f"{counts['assigned']} call tasks of {program.programId} assigned")
        return dg.Output(None, metadata=counts)

    @dg.job(
        name=f"{g}_call_assignment",
        executor_def=dg.in_process_executor,
        tags={"engage/program": program.programId},
        description=f"{program.programName}: assign open call tasks to the account managers (Personal Call Campaign).",
    )
    def assignment_job() -> None:
        assign_op()

    return assignment_job, weekly_schedule(program, assignment_job, program.callAssignment.schedule)
