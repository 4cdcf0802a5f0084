"""Asset factory of a reactive program (abandoned cart): one program YAML with `eventSources` → its Dagster family.

- `[group, "<model>_model"]` (`model`): the purchase-intent model, trained and promoted if improved (in the
  `model_retraining` job);
- the decision stages (`decisions`), hourly partitions, one multi-asset: `source_candidates` → `eligible_candidates`
  → `scored_candidates` → `offers` → `stored_candidates` → `touch_plan`, the batch programs' names; a run decides
  the event batches the cart-event sensor (`sensors/cart_events.py`) stored for its hour;
- `<group>_decide`: the decision stages in process (ARCHITECTURE §10: latency-sensitive), the sensor's job;
- `<group>_cart_expiry` (`expiry`), hourly: carts abandoned over the cart TTL (7 days) expired, their planned
  touches suppressed `expired`;
- `<group>_candidate_cleanup` and `<group>_model_retraining` (`weekly`), Sundays at 01:00 and 03:00 UTC;
- `[group, "deliveries"]` and `<group>_deliver` (`engage_assets.assets.delivery`), downstream of `touch_plan`;
  the due-touch sensor launches it like the batch programs'.  Its `not_converted` touches are re-checked against
  the purchases the cart state records (`CartConversions`).
"""

from typing import Any

import dagster as dg

from engage_assets.assets.delivery import deliver_job, deliveries_asset
from engage_assets.assets.program import ProgramDefs
from engage_assets.assets.reactive.decisions import DECISIONS, TOUCH_PLAN, cart_decisions_asset, hourly_partitions
from engage_assets.assets.reactive.expiry import build_cart_expiry
from engage_assets.assets.reactive.model import intent_model_asset, intent_model_key
from engage_assets.assets.reactive.weekly import build_candidate_cleanup, build_model_retraining
from engage_assets.domain.config import ProgramBase, ReactiveProgram

__all__ = ["DECISIONS", "build_reactive_program", "decide_job_name", "hourly_partitions", "intent_model_key"]


def decide_job_name(program: ReactiveProgram) -> str:
    """The job the cart-event sensor launches: `<group>_decide`."""
    return f"{program.group}_decide"


def decide_job(program: ReactiveProgram, decisions: dg.AssetsDefinition) -> Any:
    """`<group>_decide`: one partition's decision stages, in process."""
    return dg.define_asset_job(
        decide_job_name(program),
        selection=dg.AssetSelection.assets(decisions),
        partitions_def=hourly_partitions(program),
        tags={"engage/program": program.programId},
        executor_def=dg.in_process_executor,
        description=f"{program.programName}: decide one batch of cart events (in process).",
    )


def build_reactive_program(program: ReactiveProgram, all_programs: list[ProgramBase]) -> ProgramDefs:
    """The program's model, decision stages, `deliveries`, their jobs and the cart expiry (module docstring).  `all_programs`:
    every program of the deployment (delivery's templates, contact pressure and channel configs span them)."""
    model = intent_model_asset(program)
    decisions = cart_decisions_asset(program)
    deliveries = deliveries_asset(program, all_programs, upstream=TOUCH_PLAN)
    expiry_job, expiry_schedule = build_cart_expiry(program)
    cleanup_job, cleanup_schedule = build_candidate_cleanup(program)
    retrain_job, retrain_schedule = build_model_retraining(program)
    return ProgramDefs(
        assets=[model, decisions, deliveries],
        asset_checks=[],
        jobs=[decide_job(program, decisions), deliver_job(program, deliveries), expiry_job, cleanup_job, retrain_job],
        schedules=[expiry_schedule, cleanup_schedule, retrain_schedule],
        model_keys=[intent_model_key(program)],
    )
