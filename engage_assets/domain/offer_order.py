"""The order in which `offer_decision.decide_offers` spends a partition's budget, for a caller that decides the
partition in record batches (the offers stage streams every partition).

`decide_offers` takes candidates best first and carries the budget left from batch to batch (`OfferBudget`), so a
partition decided in batches gets exactly what one call would give it when (1) all the subjects of one customer
are in the same batch (deduplication keeps the customer's best-scored subject) and (2) the batches come in the
order the budget is spent: by `offer_priority`, highest first, ties by customer and subject (never by position:
the stage files' row order varies from run to run, the offers must not).  The offers
stage sorts the partition's `decision_columns` so (`assets.program.offers`): customers by their best subject's
priority, each customer's subjects together, best score first.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from engage_assets.domain import offer_choice
from engage_assets.domain.config import ProgramConfig
from engage_assets.domain.offer_decision import choice_inputs, segment_index, sorted_segments
from engage_assets.domain.pipeline import score_column


def offer_priority(program: ProgramConfig, scored: pa.Table) -> np.ndarray:
    """Per row, the key by which `decide_offers` spends the budget (higher first): the segment score without
    `offerChoice`; with it, the expected value of the row's best allowed offer (`offer_choice.choose_offers` takes
    candidates in that order), -inf where no offer is allowed.  Row by row: a batch's values do not depend on the
    other rows of the partition."""
    scores = scored.column("score").to_numpy(zero_copy_only=False).astype(float)
    choice = program.offerChoice
    if choice is None or scored.num_rows == 0:
        return scores
    segments = sorted_segments(program)
    _, acceptance, cost, value, allowed = choice_inputs(program, segments, scored, segment_index(scores, segments))
    ev = offer_choice.expected_values(acceptance, value, cost, allowed)
    return ev.max(axis=1)


def priority_columns(program: ProgramConfig, available: list[str]) -> list[str]:
    """The columns `offer_priority` reads, of those `available`: a caller streaming a partition reads only these (the
    scored rows are wide; their other columns are not needed to rank them)."""
    wanted = {"score", *offer_choice.COST_COLUMNS}
    if (choice := program.offerChoice) is not None:
        wanted |= {score_column(choice.acceptanceModel), choice.valueColumn}
    return [c for c in available if c in wanted]


def decision_columns(program: ProgramConfig, available: list[str]) -> list[str]:
    """The columns `offer_decision.decide_offers` and the budget order read (`priority_columns`, the customer and
    the subject, which breaks ties): the offers stage decides a partition on these alone, then attaches the
    decisions to the wide rows."""
    keys = dict.fromkeys(["customer_id", program.connector.subjectColumn])
    return [*keys, *(c for c in priority_columns(program, available) if c not in keys)]
