"""A program's `marketplaces`: the customers it may reach.  A row whose customer's marketplace is not one of the
program's (or is unknown) never becomes a candidate; it is set aside at the source with its own reason."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

MARKETPLACE_FILTER = "marketplaces"  # the rejection log's filter_id for these rows
MARKETPLACE_COLUMN = "marketplace"


def split_marketplaces(table: pa.Table, marketplaces: Sequence[str]) -> tuple[pa.Table, pa.Table]:
    """(the rows whose `marketplace` is one of `marketplaces`, the others with `rejection_reason`).  NULL-safe: an
    unknown marketplace is never taken for one of the program's."""
    listed = ", ".join(marketplaces)
    if MARKETPLACE_COLUMN not in table.column_names:
        raise ValueError(f"the batch has no {MARKETPLACE_COLUMN!r} column to restrict to the marketplaces {listed}")
    market = table.column(MARKETPLACE_COLUMN).cast(pa.string())
    inside = pc.fill_null(pc.is_in(market, value_set=pa.array(list(marketplaces), pa.string())), False)
    if pc.all(inside).as_py():
        return table, table.slice(0, 0).append_column("rejection_reason", pa.array([], pa.string()))
    outside = pc.invert(inside)
    named = pc.binary_join_element_wise(
        "marketplace ", market, f" is not one of the program's marketplaces ({listed})", ""
    )
    reason = pc.fill_null(named, f"marketplace unknown (the program's marketplaces: {listed})")
    rejected = table.filter(outside).append_column("rejection_reason", reason.filter(outside))
    return table.filter(inside), rejected
