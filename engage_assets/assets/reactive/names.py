"""The names the two code locations share for a reactive program: its decide job and its model's asset key (the
event path's location names them, the main one builds what they name)."""

import dagster as dg

from engage_assets.assets.keys import model_asset_name
from engage_assets.domain.config import ReactiveProgram
from engage_assets.reactive.training import intent_model


def decide_job_name(program: ReactiveProgram) -> str:
    """The job the cart-event sensor launches: `<group>_decide`."""
    return f"{program.group}_decide"


def intent_model_key(program: ReactiveProgram) -> dg.AssetKey:
    """The key of the program's purchase-intent model asset, e.g. `abandoned_cart_recovery/purchase_intent_v4_model`."""
    return dg.AssetKey([program.group, model_asset_name(intent_model(program).modelId)])
