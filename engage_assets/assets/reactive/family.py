"""The main location's part of a reactive program's family (the event path's is the package's: its docstring):

- `[group, "<model>_model"]` (`model`): the purchase-intent model, trained and promoted if improved (in the
  `model_retraining` job);
- `<group>_cart_expiry` (`expiry`), hourly: carts abandoned over the cart TTL (7 days) expired, their planned
  touches suppressed `expired`;
- `<group>_candidate_cleanup` and `<group>_model_retraining` (`weekly`), Sundays at 01:00 and 03:00 UTC;
- `[group, "deliveries"]` and `<group>_deliver` (`engage_assets.assets.delivery`), downstream of `touch_plan`;
  the due-touch sensor launches it like the batch programs'.  Its `not_converted` touches are re-checked against
  the purchases the cart state records (`CartConversions`).
"""

from engage_assets.assets.delivery import deliver_job, deliveries_asset
from engage_assets.assets.program import ProgramDefs
from engage_assets.assets.reactive.decisions import TOUCH_PLAN
from engage_assets.assets.reactive.expiry import build_cart_expiry
from engage_assets.assets.reactive.model import intent_model_asset
from engage_assets.assets.reactive.names import intent_model_key
from engage_assets.assets.reactive.weekly import build_candidate_cleanup, build_model_retraining
from engage_assets.domain.config import ProgramBase, ReactiveProgram


def build_reactive_program(program: ReactiveProgram, all_programs: list[ProgramBase]) -> ProgramDefs:
    """The program's model, `deliveries`, their jobs and the cart expiry, cleanup and retraining (module docstring):
    the main location's part.  `all_programs`: every program of the deployment (delivery's templates, contact pressure
    and channel configs span them)."""
    model = intent_model_asset(program)
    deliveries = deliveries_asset(program, all_programs, upstream=TOUCH_PLAN)
    expiry_job, expiry_schedule = build_cart_expiry(program)
    cleanup_job, cleanup_schedule = build_candidate_cleanup(program)
    retrain_job, retrain_schedule = build_model_retraining(program)
    return ProgramDefs(
        assets=[model, deliveries],
        asset_checks=[],
        jobs=[deliver_job(program, deliveries), expiry_job, cleanup_job, retrain_job],
        schedules=[expiry_schedule, cleanup_schedule, retrain_schedule],
        model_keys=[intent_model_key(program)],
    )
