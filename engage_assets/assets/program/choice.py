"""The offers stage's metadata about the offer choice (`domain.offer_choice`): what was chosen, its expected value,
the budget left."""

from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from engage_assets.domain import offer_choice
from engage_assets.domain.config import ProgramConfig


def choice_metadata(program: ProgramConfig, offers: pa.Table) -> dict[str, Any]:
    """`budget_left_usd` for every program; with `offerChoice`, the acceptance model, the chosen offers' total
    expected value and a table per score segment and chosen offer (`offer_choice/chosen`)."""
    holdout = np.asarray(offers.column("holdout"), dtype=bool)
    spent = float(np.asarray(offers.column("offer_value_usd"), dtype=float)[~holdout].sum())
    meta: dict[str, Any] = {"budget_left_usd": round(max(0.0, program.budget.amount - spent), 2)}
    choice = program.offerChoice
    if choice is None or "expected_value_usd" not in offers.column_names:
        return meta
    ev = np.nan_to_num(np.asarray(offers.column("expected_value_usd"), dtype=float))
    table = offer_choice.choice_markdown(
        offers.column("segment").to_pylist(), offers.column("offer_type").to_pylist(), ev.tolist()
    )
    return meta | {
        "offer_choice/model": choice.acceptanceModel,
        "offer_choice/expected_value_usd": round(float(ev[~holdout].sum()), 2),
        "offer_choice/chosen": dg.MetadataValue.md(table),
    }
