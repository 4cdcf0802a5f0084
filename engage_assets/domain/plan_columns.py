"""Arrow column helpers of the touch planner (`plan.py`): optional columns, customer look-ups, event times as
epoch seconds, and the offer each touch carries as one JSON object per row.

Vectorised like the planner: per-row work is Arrow/numpy; Python loops run over segments only.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.domain.config import ProgramConfig, ReactiveProgram, Segment
from engage_assets.domain.pipeline import offer_details

# Offer amounts computed per row (the rest of the offer is the segment's terms, the same for every row).
_ROW_AMOUNTS = ("valueUsd", "refundAmount", "creditAmount")


def _static_offer(seg: Segment) -> dict:
    """The segment's offer terms, the same for every row (the per-row amounts are left out)."""
    offer = offer_details(seg)
    if seg.discount is not None:
        offer["discountPercent"] = int(seg.discount) if float(seg.discount).is_integer() else seg.discount
    for k in _ROW_AMOUNTS:
        offer.pop(k, None)
    return offer


def column(table: pa.Table | None, name: str) -> pa.ChunkedArray | None:
    """`table[name]`, or None when there is no table or it lacks the column (optional inputs)."""
    return table.column(name) if table is not None and name in table.column_names else None


def strings(arr: pa.ChunkedArray | pa.Array | None, n: int) -> pa.Array:
    """A column as one string array; `n` nulls for a missing column."""
    if arr is None:
        return pa.nulls(n, pa.string())
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return arr.cast(pa.string())


def _floats(arr: pa.ChunkedArray | None, n: int) -> np.ndarray:
    """A column as float64 numpy values (NaN for nulls); all NaN for a missing column."""
    if arr is None:
        return np.full(n, np.nan)
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).astype(float)


def epoch_seconds(arr: pa.ChunkedArray, n: int, default: int) -> np.ndarray:
    """An event column (epoch seconds, or a timestamp/date) as int64 epoch seconds; nulls → `default`."""
    arr = arr.combine_chunks()
    if pa.types.is_timestamp(arr.type):
        unit = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[arr.type.unit]
        secs = pc.divide(arr.cast(pa.int64()), unit)
    elif pa.types.is_date(arr.type):
        secs = pc.multiply(arr.cast(pa.date32()).cast(pa.int32()).cast(pa.int64()), 86_400)
    else:
        secs = pc.cast(arr, pa.int64())
    return pc.fill_null(secs, default).to_numpy(zero_copy_only=False).astype(np.int64)


def lookup(keys: pa.Array, table: pa.Table | None, name: str) -> pa.Array | None:
    """`table[name]` of the row whose customer_id equals each key (null where none)."""
    col = column(table, name)
    ids = column(table, "customer_id")
    if table is None or col is None or ids is None or table.num_rows == 0:
        return None
    idx = pc.index_in(keys, value_set=strings(ids, table.num_rows))
    return col.combine_chunks().take(idx)


def _json_numbers(values: np.ndarray) -> pa.Array:
    """Floats as JSON number text rounded to cents, `null` where missing."""
    arr = pa.array(np.round(values, 2), from_pandas=True)
    return pc.fill_null(arr.cast(pa.string()), "null")


def offer_json(
    program: ProgramConfig | ReactiveProgram, offers: pa.Table, seg_idx: np.ndarray, segments: list[Segment]
) -> pa.Array:
    """The offer as the templates see it, one JSON object per row: the segment's terms, `discountPercent`,
    `valueUsd`, and amounts in the order's (or the marketplace's) currency: `refundAmount` is the order value for a
    full refund, the config's USD amounts are converted with the order's own rate."""
    n = offers.num_rows
    value_usd = _floats(column(offers, "offer_value_usd"), n)
    order_value = _floats(column(offers, "order_value"), n)
    order_usd = _floats(column(offers, "order_value_usd"), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        fx = order_value / order_usd
    fx = np.where(np.isfinite(fx) & (fx > 0), fx, 1.0)  # local units per USD
    refund = np.full(n, np.nan)
    credit = np.full(n, np.nan)
    prefixes = []
    for i, seg in enumerate(segments):
        rows = seg_idx == i
        if seg.refundType == "full":
            refund[rows] = order_value[rows]
        if seg.refundAmount is not None:
            fill = rows & np.isnan(refund)
            refund[fill] = seg.refundAmount * fx[fill]
        amount = seg.creditAmount if seg.creditAmount is not None else seg.additionalCredit
        if amount is not None:
            credit[rows] = amount * fx[rows]
        body = json.dumps(_static_offer(seg), sort_keys=True, separators=(",", ":"))
        prefixes.append(body[:-1] + ("," if body != "{}" else ""))
    prefix = pa.array(np.array(prefixes, dtype=object)[seg_idx], pa.string())
    return pc.binary_join_element_wise(
        prefix,
        '"valueUsd":',
        _json_numbers(value_usd),
        ',"refundAmount":',
        _json_numbers(refund),
        ',"creditAmount":',
        _json_numbers(credit),
        "}",
        "",
    )
