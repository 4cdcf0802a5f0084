"""`resources.batches.ordered_groups`: the rows in the order a budget is spent, re-cut into batches of about the asked
size that never split a group, equal to a plain sort of the whole table (the reference below)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from resources import batches
from resources.batches import ParquetBatches, ordered_groups, write_batches


def reference(table: pa.Table, priority: np.ndarray) -> list[int]:
    """Row ids in order: groups by their best row's priority (best: highest score, then first), ties by the group's
    key (the customer); within a group, highest score first, then position."""
    groups: dict[str, list[int]] = {}
    for i, g in enumerate(table.column("customer_id").to_pylist()):
        groups.setdefault(g, []).append(i)
    score = table.column("score").to_pylist()
    out = []
    for members in groups.values():
        members.sort(key=lambda i: (-score[i], i))
    for members in sorted(groups.values(), key=lambda m: (-priority[m[0]], table.column("customer_id")[m[0]].as_py())):
        out.extend(members)
    return out


@pytest.mark.parametrize("slice_rows", [500_000, 700], ids=["one-slice", "slices"])
@pytest.mark.parametrize("rows, batch", [(3_000, 256), (3_000, 5_000), (1, 8), (0, 8), (200_000, 65_536)])
def test_the_order_is_the_reference_and_no_batch_splits_a_group(tmp_path, rows, batch, slice_rows, monkeypatch):
    """Also when the rows are sorted a slice of positions at a time (a slice's end may fall inside a group)."""
    monkeypatch.setattr(batches, "ORDER_SLICE_ROWS", slice_rows)
    rng = np.random.default_rng(rows + batch)
    table = pa.table(
        {
            "row": pa.array(np.arange(rows)),
            "customer_id": pa.array([f"C{c:07d}" for c in rng.integers(0, max(rows // 3, 1), rows)], pa.string()),
            "score": pa.array(np.round(rng.random(rows), 2)),  # ties on purpose
            "wide": pa.array(["x" * 50] * rows, pa.string()),
        }
    )
    priority = np.round(rng.random(rows), 1)  # ties between groups on purpose
    # 200,000 rows in 65,536-row batches: DuckDB's reader hands out 122,880 rows at a time, which must be re-cut
    table = table.append_column("priority", pa.array(priority, pa.float64()))
    path = str(tmp_path / "scored.parquet")
    write_batches([table], path)
    source = ParquetBatches(path, batch)
    out = list(ordered_groups(source, "priority", "customer_id", "score"))
    got = [r for t in out for r in t.column("row").to_pylist()]
    assert got == reference(table, priority)
    assert all(t.schema == table.schema for t in out)
    seen: set[str] = set()
    for t in out:
        sizes = Counter(t.column("customer_id").to_pylist())
        assert not sizes.keys() & seen, "a customer's rows were split across two batches"
        seen |= sizes.keys()
        assert t.num_rows < batch + max(sizes.values(), default=0)  # about the asked size: at most one group past it


def test_the_order_does_not_depend_on_the_rows_places_in_the_file(tmp_path):
    """The stage files' row order varies from run to run (DuckDB writes in parallel): ties in priority and score are
    broken by the customer and the `tiebreak` column (the subject), so a shuffled file comes out in the same order."""
    rng = np.random.default_rng(5)
    n = 2_000
    table = pa.table(
        {
            "customer_id": pa.array([f"C{c:05d}" for c in rng.integers(0, 400, n)], pa.string()),
            "order_id": pa.array([f"O{i:06d}" for i in range(n)], pa.string()),
            "score": pa.array(np.round(rng.random(n), 1)),  # many ties
        }
    )
    priority = np.round(table.column("score").to_numpy() * 2, 1) / 2  # ties between groups too
    table = table.append_column("priority", pa.array(priority))
    orders = []
    for seed in (0, 1):
        shuffle = np.random.default_rng(seed).permutation(n)
        path = str(tmp_path / f"scored-{seed}.parquet")
        write_batches([table.take(pa.array(shuffle))], path)
        out = ordered_groups(ParquetBatches(path, 300), "priority", "customer_id", "score", "order_id")
        orders.append([r for t in out for r in t.column("order_id").to_pylist()])
    assert orders[0] == orders[1] and len(orders[0]) == n
