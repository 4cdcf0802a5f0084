"""Asset factory of a reactive program (abandoned cart): one program YAML with `eventSources` → its Dagster family,
in two code locations.

The event path (`engage_assets.reactive_location`, location `engage_events`): what a cart event runs through, in a
process that starts in about a second (no dagster-dbt, no sklearn):
- the decision stages (`decisions`), hourly partitions, one multi-asset: `source_candidates` → `eligible_candidates`
  → `scored_candidates` → `offers` → `stored_candidates` → `touch_plan`, the batch programs' names; a run decides
  the event batches the cart-event sensor (`sensors/cart_events.py`) stored for its hour;
- `<group>_decide` (`decide_job`): the decision stages in process (ARCHITECTURE §10: latency-sensitive), the
  sensor's job.

The rest (`family.build_reactive_program`, in the main location `engage`): the purchase-intent model, the deliveries
and their job, the cart expiry, the weekly cleanup and retraining.  Lineage spans the two: `deliveries` depends on
`touch_plan` and `scored_candidates` on the model by asset key.
"""

from typing import Any

import dagster as dg

from engage_assets.assets.reactive.decisions import DECISIONS, cart_decisions_asset, hourly_partitions
from engage_assets.assets.reactive.names import decide_job_name, intent_model_key
from engage_assets.domain.config import ReactiveProgram

__all__ = [
    "DECISIONS",
    "cart_decisions_asset",
    "decide_job",
    "decide_job_name",
    "hourly_partitions",
    "intent_model_key",
]


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
