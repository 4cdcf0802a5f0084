"""`offerChoice` (engage:): how a batch program's second model picks each candidate's offer (`domain.offer_choice`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engage_assets.domain.config.common import ConfigModel


class OfferChoice(ConfigModel):
    """engage: the acceptance model chooses among the offers a segment allows by expected value (acceptance ×
    value − cost), best EV first within the budget."""

    acceptanceModel: str = Field(
        description="modelId of the scoring model whose score is the probability that a candidate takes an offer "
        "(offer-effectiveness; for refunds, churn risk: the chance the goodwill is needed). Must be one of "
        "scoringModels."
    )
    valueColumn: str = Field(
        default="lifetime_value_usd",
        description="Numeric batch column worth gaining when the offer is taken (USD); a NULL counts as 0.",
    )
    alternatives: Literal["own", "less-generous"] = Field(
        default="less-generous",
        description="Offers a segment allows: `own` (its own offer only: the choice then decides who gets the "
        "budget) or `less-generous` (its own and those of the segments scored below it; never a more generous "
        "one).",
    )
    discountElasticity: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Change of the acceptance's log-odds per discount point above referenceDiscount (0: the "
        "discount does not change acceptance, so the cheapest allowed offer has the best EV).",
    )
    referenceDiscount: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="Discount (percent) at which the acceptance model's score holds: the training history's mean.",
    )
