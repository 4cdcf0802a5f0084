"""A customer deleted while a batch run is under way is never written to the store nor planned: the store write and
the touch plan re-read the deletions just before writing (a deletion recorded after the source stage) and again
after (a deletion recorded during the write, whose API call erased the store and ledger before the run wrote).

The end-to-end version (a deletion between the offers and the writes of a real run) is in `tests/test_e2e.py`."""

from __future__ import annotations

import sqlite3
from datetime import date
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from engage_assets.assets.delivery import plan_partition
from engage_assets.assets.program.store import store_partition
from engage_assets.domain import offer_decision, pipeline
from engage_assets.domain.contacts import CONTACT_COLUMNS
from engage_assets.domain.sources import PartitionWindow
from resources.delivery_ledger.resource import SqliteDeliveryLedgerResource
from resources.refund_ledger.resource import SqliteRefundLedgerResource
from resources.store.sqlite import SqliteCandidateStore
from tests.test_pipeline_units import PROGRAMS, scored_batch

WIN_BACK = PROGRAMS["win-back-campaigns"]
WINDOW = PartitionWindow("2026-11-02", date(2026, 11, 2), date(2026, 11, 9))
BEFORE, DURING = "C000010", "C000150"  # deleted before the write, and during it


class Deletions:
    """The engagement store's deletion records as a run sees them: BEFORE is recorded before the stage reads them;
    DURING once the stage has read them (while it writes)."""

    def __init__(self) -> None:
        self.reads = 0

    def deleted_customers(self) -> set[str]:
        self.reads += 1
        return {BEFORE} if self.reads == 1 else {BEFORE, DURING}


@pytest.fixture(scope="module")
def offers() -> pa.Table:
    scores = {pipeline.score_column(m.modelId): np.linspace(0, 1, 200) for m in WIN_BACK.scoringModels}
    table = offer_decision.make_offers(WIN_BACK, scored_batch(200, seed=2, **scores)).table
    held = dict(zip(table.column("customer_id").to_pylist(), table.column("holdout").to_pylist(), strict=True))
    assert held.get(BEFORE) is False and held.get(DURING) is False  # both would be contacted
    return table


def test_the_store_write_leaves_out_customers_deleted_during_the_run(tmp_path, offers):
    store = SqliteCandidateStore(path=str(tmp_path / "store.sqlite"))
    deletions = Deletions()
    _, meta = store_partition(WIN_BACK, store, deletions, WINDOW, offers)  # type: ignore[arg-type]
    now = 1_700_000_000  # before the candidates expire
    assert store.customer_candidates(BEFORE, now=now) == [] and store.customer_candidates(DURING, now=now) == []
    assert store.count(WIN_BACK.programId, WINDOW.partition_key, now=now) == offers.num_rows - 2
    assert meta["excluded_erased"] == 2 and meta["dagster/row_count"] == offers.num_rows - 2
    assert deletions.reads == 2  # just before the write, and after it


class Contacts:
    """marts.customers for the planner: every offer's customer, with no contact details (the plan needs none)."""

    def __init__(self, ids: list[str]):
        self.ids = ids

    def query_arrow(self, sql: str, params: object = None) -> pa.Table:
        return pa.table({c: self.ids if c == "customer_id" else [None] * len(self.ids) for c in CONTACT_COLUMNS})


def test_the_touch_plan_never_plans_customers_deleted_during_the_run(tmp_path, offers):
    resources = SimpleNamespace(
        engagement=Deletions(),
        delivery_ledger=SqliteDeliveryLedgerResource(path=str(tmp_path / "delivery.sqlite")),
        refund_ledger=SqliteRefundLedgerResource(path=str(tmp_path / "refunds.sqlite")),
        warehouse=Contacts(offers.column("customer_id").to_pylist()),
    )
    plan, meta = plan_partition(WIN_BACK, WINDOW, offers, resources)
    assert not {BEFORE, DURING} & set(plan.column("customerId").to_pylist())
    ledger = sqlite3.connect(tmp_path / "delivery.sqlite")
    planned = {c for (c,) in ledger.execute("SELECT DISTINCT customer_id FROM touches")}
    assert planned and not {BEFORE, DURING} & planned
    assert meta["excluded_erased"] == 2 and meta["dagster/row_count"] == plan.num_rows > 0
    assert resources.engagement.reads == 2  # just before planning, and after the ledger write
