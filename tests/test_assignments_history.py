"""The assignments history: every stored candidate, the holdout included, so the control group exists for lift
(batch programs through `record_offers`, reactive ones through `record_decided`)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from engage_assets.assets.history import record_decided, record_offers
from engage_assets.domain.config import load_programs
from engage_assets.domain.history import assignments_of_records, offer_id
from engage_assets.settings import program_config_dir
from resources.exports.local import LocalParquetExports


def _read(root, name):
    return pq.ParquetDataset(root / name, partitioning=None).read()


def test_batch_assignments_keep_the_holdout_and_offers_do_not(tmp_path):
    program = next(p for p in load_programs(program_config_dir()) if p.programId == "churn-prevention")
    subject = program.connector.subjectColumn
    offers = pa.table(
        {
            "customer_id": ["c1", "c2", "c3"],
            subject: ["c1", "c2", "c3"],
            "segment": ["critical", "high", "high"],
            "offer_type": ["premium", "standard", "standard"],
            "offer_value_usd": [50.0, None, 20.0],
            "holdout": [False, True, None],
        }
    )
    history = LocalParquetExports(root=str(tmp_path / "h"), warehouse_path=str(tmp_path / "w.duckdb"))
    meta = record_offers(history, program, "2026-11-09", date(2026, 11, 9), offers)
    assert meta == {"history/offers": 2, "history/assignments": 3}
    assigned = _read(tmp_path / "h", f"assignments_{program.group}").sort_by("customer_id")
    assert assigned.column("holdout").to_pylist() == [False, True, False]
    assert assigned.column("amount_usd").to_pylist() == [50.0, 0.0, 20.0]
    assert assigned.column("offer_id").to_pylist()[0] == offer_id("churn-prevention", "2026-11-09", "c1")
    assert set(assigned.column("assigned_date").to_pylist()) == {date(2026, 11, 9)}
    offered = _read(tmp_path / "h", f"offers_{program.group}")
    assert sorted(offered.column("customer_id").to_pylist()) == ["c1", "c3"]
    # A re-run of the partition replaces its file.
    record_offers(history, program, "2026-11-09", date(2026, 11, 9), offers)
    assert _read(tmp_path / "h", f"assignments_{program.group}").num_rows == 3


def _record(cart: str, holdout: bool) -> dict:
    return {
        "customerId": "c1",
        "programId": "abandoned-cart-recovery",
        "partitionKey": f"2026-11-30T10:00:00Z~{cart}",
        "subjectId": cart,
        "segment": "high",
        "offerType": "discount",
        "offer": {"valueUsd": 7.5},
        "holdout": holdout,
        "createdAt": datetime(2026, 11, 30, 11, tzinfo=UTC).isoformat(),
    }


def test_reactive_decisions_write_each_set_once(tmp_path):
    program = next(p for p in load_programs(program_config_dir()) if p.programId == "abandoned-cart-recovery")
    history = LocalParquetExports(root=str(tmp_path / "h"), warehouse_path=str(tmp_path / "w.duckdb"))
    records = [_record("cart-1", False), _record("cart-2", True)]
    assert record_decided(history, program, "2026-11-30-10:00", records) == 2
    assert record_decided(history, program, "2026-11-30-10:00", records) == 2  # the same set: the same file
    assert record_decided(history, program, "2026-11-30-10:00", []) == 0  # a replay deciding nothing writes nothing
    assert record_decided(history, program, "2026-11-30-10:00", [_record("cart-3", False)]) == 1
    table = _read(tmp_path / "h", f"assignments_{program.group}")
    assert sorted(table.column("subject_id").to_pylist()) == ["cart-1", "cart-2", "cart-3"]
    one = assignments_of_records(records, datetime.now(UTC)).to_pylist()
    assert [r["holdout"] for r in one] == [False, True] and one[0]["amount_usd"] == 7.5
    assert one[0]["assigned_date"] == date(2026, 11, 30)
