"""From eligible carts to stored candidates and planned touches: score, discount, holdout, records, touch plan.

- Score: the program's first scoring model (purchase-intent-v4) through the scoring resource, with the promoted
  model version (`ModelRef`); the candidate's `score` is its purchase intent, rounded to 1e-9 (BLAS sums a batch in
  another order than a single row: without it a batch and its events one at a time would store last-bit
  differences).
- Discount: the program's discount rule as offer segments (`ReactiveProgram.strategy`, documented in
  `engage_assets.domain.config.reactive`): never above `maxDiscount`.  `offer_value_usd` is what the discount costs
  (percent × cart value in USD).
- Holdout: `domain.holdout.holdout_mask`, by customer, as the batch programs do; a held-out candidate is stored and its
  touches recorded held out (never sent).
- Records: the candidate record of `resources.store.base`, expiring `candidateTTLDays` after `now`.
- Touches: `plan.plan_touches` (email +60 min, SMS +24 h, push +72 h after `abandoned_at`; `onlyIfNotConverted` as a
  send-time condition), each row moved to its cart's partition.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain.config import ReactiveProgram, Segment
from engage_assets.domain.holdout import holdout_mask
from engage_assets.domain.models import ModelRef
from engage_assets.domain.offer_decision import segment_index
from engage_assets.domain.pipeline import score_column
from engage_assets.domain.plan import plan_touches
from resources.scoring.base import ScoringResource

CONTEXT_COLUMNS = ("cart_value", "currency", "item_count", "abandonment_reason", "time_zone")
SCORE_DECIMALS = 9
# The offer columns a candidate record reads besides CONTEXT_COLUMNS.
RECORD_COLUMNS = (
    "customer_id",
    "partition_key",
    "marketplace",
    "cart_id",
    "segment",
    "offer_type",
    "score",
    "offer_value_usd",
    "holdout",
    "abandoned_at",
)
PLANNING_PARTITION = "reactive"  # placeholder partition of the plan before each row moves to its cart's


def score_and_offer(
    program: ReactiveProgram, eligible: pa.Table, scoring: ScoringResource, model: ModelRef
) -> pa.Table:
    """The eligible carts with score, segment, offer type, discount, offer value and holdout columns."""
    n = eligible.num_rows
    raw = scoring.score(model, eligible.select(list(model.features)).to_pandas()) if n else np.zeros(0)
    scores = np.round(raw, SCORE_DECIMALS)
    segments = list(program.strategy.segments)
    idx = segment_index(scores, segments)
    discount = np.array([np.nan if s.discount is None else s.discount for s in segments] + [np.nan])[idx]
    value = eligible.column("cart_value").to_numpy(zero_copy_only=False).astype(float)
    customers = [str(c) for c in eligible.column("customer_id").to_pylist()]
    out = eligible.append_column(score_column(model.model_id), pa.array(scores, pa.float64()))
    columns: dict[str, pa.Array] = {
        "score": pa.array(scores, pa.float64()),
        "segment": pa.array([segments[i].name for i in idx], pa.string()),
        "offer_type": pa.array([segments[i].offer_type for i in idx], pa.string()),
        "discount_percent": pa.array(discount, pa.float64(), from_pandas=True),
        "offer_value_usd": pa.array(np.round(np.nan_to_num(discount) / 100.0 * value, 2), pa.float64()),
        "holdout": pa.array(
            holdout_mask(customers, program.programId, program.holdout.percent, program.holdout.salt), pa.bool_()
        ),
    }
    for name, arr in columns.items():
        out = out.append_column(name, arr)
    return out


def _offer(segment: Segment, value_usd: float) -> dict[str, Any]:
    """The offer a candidate carries: type, cost in USD, the discount in percent (as the templates read it)."""
    offer: dict[str, Any] = {"offerType": segment.offer_type, "valueUsd": value_usd}
    if segment.discount is not None:
        offer["discountPercent"] = int(segment.discount) if float(segment.discount).is_integer() else segment.discount
    return offer


def candidate_records(program: ReactiveProgram, offers: pa.Table, model: ModelRef, now: datetime) -> list[dict]:
    """The candidate record of each offer row, in its cart's partition."""
    expires = int((now + timedelta(days=program.candidateTTLDays)).timestamp())
    segments = {s.name: s for s in program.strategy.segments}
    channels = [ch.channelId for ch in program.channels if ch.enabled]
    created = now.isoformat()
    records = []
    wanted = [c for c in (*RECORD_COLUMNS, *CONTEXT_COLUMNS) if c in offers.column_names]
    for row in offers.select(list(dict.fromkeys(wanted))).to_pylist():  # only what a record reads: rows are wide
        hold = bool(row["holdout"])
        context = {c: row.get(c) for c in CONTEXT_COLUMNS}
        context["abandoned_at"] = row["abandoned_at"].isoformat()
        records.append(
            {
                "customerId": row["customer_id"],
                "programId": program.programId,
                "partitionKey": row["partition_key"],
                "marketplace": row.get("marketplace"),
                "subjectId": row["cart_id"],
                "segment": row["segment"],
                "offerType": row["offer_type"],
                "score": float(row["score"]),
                "scores": {model.model_id: float(row["score"])},
                "modelVersions": {model.model_id: model.version},
                "offer": _offer(segments[row["segment"]], row["offer_value_usd"]),
                "holdout": hold,
                "channels": [] if hold else channels,
                "context": context,
                "createdAt": created,
                "expiresAt": expires,
            }
        )
    return records


def touch_plan(program: ReactiveProgram, offers: pa.Table, now: datetime) -> pa.Table:
    """Every touch of the offers (`plan_touches`), each in its cart's partition."""
    plan = plan_touches(program, offers, None, now, PLANNING_PARTITION)
    if plan.num_rows == 0:
        return plan
    keys = _pair(offers.column("customer_id"), offers.column("cart_id"))
    touch_keys = _pair(plan.column("customerId"), plan.column("subjectId"))
    partitions = offers.column("partition_key").combine_chunks().take(pc.index_in(touch_keys, value_set=keys))
    return plan.set_column(plan.schema.get_field_index("partitionKey"), "partitionKey", partitions)


def _pair(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.Array:
    """customer and cart as one string per row (a unit separator between them)."""
    return pc.binary_join_element_wise(a.combine_chunks(), b.combine_chunks(), "\x1f")
