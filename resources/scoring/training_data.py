"""The labelled history a model trains on, read from its mart: the features and the label, and the hidden-truth
column only when the table has it (`truthColumn` is evaluation-only: a production warehouse has no such column, and
training must not need it)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from resources.warehouse.base import WarehouseResource


def read_training_frame(
    warehouse: WarehouseResource, table: str, features: Sequence[str], label: str, truth_column: str | None
) -> tuple[pd.DataFrame, str | None]:
    """(`marts.<table>`'s feature, label and truth columns, the truth column when the table has it, else None)."""
    present = set(warehouse.query_arrow(f"SELECT * FROM marts.{table} LIMIT 0").column_names)
    truth = truth_column if truth_column and truth_column in present else None
    columns = list(dict.fromkeys([*features, label, *([truth] if truth else [])]))
    absent = [c for c in columns if c not in present]
    if absent:
        raise KeyError(f"marts.{table} lacks column(s) {', '.join(absent)} (has {', '.join(sorted(present))})")
    return warehouse.query_arrow(f"SELECT {', '.join(columns)} FROM marts.{table}").to_pandas(), truth
