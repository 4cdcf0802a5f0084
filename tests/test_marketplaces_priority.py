"""Config fields that act (#12, item 3): `marketplaces` restricts the candidates at the source; `priority` orders a
program's channels in the plan, in the stored candidate and in delivery, where a contact cap leaves room for fewer
touches than are due."""

from __future__ import annotations

from datetime import UTC, date, datetime
from datetime import time as dtime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engage_assets.assets.program.source import source_partition
from engage_assets.delivery.engine import DeliveryEngine, EngineConfig
from engage_assets.domain import pipeline
from engage_assets.domain.config import ProgramConfig, load_programs
from engage_assets.domain.marketplaces import split_marketplaces
from engage_assets.domain.plan import by_priority, plan_touches
from engage_assets.domain.pressure import PressurePolicy
from engage_assets.domain.sources import PartitionWindow
from engage_assets.settings import PROJECT_ROOT
from resources.channels.outbox import OutboxPushChannel, OutboxSmsChannel
from resources.delivery_ledger.sqlite import DeliveryLedger
from resources.staging import RejectionLogResource
from resources.warehouse.duckdb import DuckDBWarehouse
from tests.delivery_support import FakeCustomerState, FakeRenderer, contact, plan_table

PROGRAMS = {p.programId: p for p in load_programs(PROJECT_ROOT / "program_configs")}
REFUNDS = PROGRAMS["proactive-refunds"]
CHURN = PROGRAMS["churn-prevention"]
assert isinstance(REFUNDS, ProgramConfig) and isinstance(CHURN, ProgramConfig)
DAY = date(2026, 11, 21)

# customer -> marketplace (None: unknown)
CUSTOMERS = {"C_US": "US", "C_UK": "UK", "C_FR": "FR", "C_NONE": None}


def test_split_marketplaces_is_null_safe_and_names_each_cause():
    table = pa.table({"customer_id": list(CUSTOMERS), "marketplace": list(CUSTOMERS.values())})
    kept, rejected = split_marketplaces(table, ["US", "UK"])
    assert kept.column("customer_id").to_pylist() == ["C_US", "C_UK"]
    reasons = rejected.select(["customer_id", "rejection_reason"]).to_pylist()
    assert {r["customer_id"]: r["rejection_reason"] for r in reasons} == {
        "C_FR": "marketplace FR is not one of the program's marketplaces (US, UK)",
        "C_NONE": "marketplace unknown (the program's marketplaces: US, UK)",
    }
    with pytest.raises(ValueError, match="no 'marketplace' column"):
        split_marketplaces(table.drop_columns(["marketplace"]), ["US"])


@pytest.fixture
def marts(tmp_path):
    """The three marts the refunds program's source reads, by hand: one late order per customer on DAY."""
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute(
            """CREATE TABLE marts.customers (customer_id VARCHAR, marketplace VARCHAR, time_zone VARCHAR,
               subscription_tier VARCHAR, account_status VARCHAR, lifetime_value_usd DOUBLE, order_frequency INTEGER,
               monthly_revenue_usd DOUBLE, satisfaction_history DOUBLE, complaint_history INTEGER,
               discount_sensitivity DOUBLE, marketing_opt_out BOOLEAN, email_opt_in BOOLEAN, sms_opt_in BOOLEAN,
               push_opt_in BOOLEAN, phone_opt_in BOOLEAN)"""
        )
        for c, market in CUSTOMERS.items():
            con.execute(
                "INSERT INTO marts.customers VALUES (?, ?, 'UTC', 'standard', 'active', 900, 6, 40, 4.2, 0, 0.3,"
                " false, true, true, false, false)",
                [c, market],
            )
        con.execute(
            """CREATE TABLE marts.order_tracking AS SELECT customer_id, 'O_' || customer_id AS order_id,
               DATE '2026-11-21' AS delivery_date, DATE '2026-11-16' AS expected_delivery_date, 5 AS delay_days,
               80.0 AS order_value, 'USD' AS currency, 80.0 AS order_value_usd, 'good' AS item_condition,
               0 AS customer_complaints, true AS refundable FROM marts.customers"""
        )
        con.execute(
            "CREATE TABLE marts.offer_history (customer_id VARCHAR, program_id VARCHAR, offer_date DATE, "
            "offer_id VARCHAR)"
        )
    return DuckDBWarehouse(path=str(path)), RejectionLogResource(base_path=str(tmp_path / "stages"))


def test_a_customer_outside_the_programs_marketplaces_never_becomes_a_candidate(marts):
    warehouse, rejections = marts
    program = REFUNDS.model_copy(update={"marketplaces": ["US", "UK"]})
    window = PartitionWindow(DAY.isoformat(), DAY, date(2026, 11, 22))
    at, meta = source_partition(program, warehouse, rejections.base_path, set(), window)
    source = pq.read_table(at)
    assert sorted(source.column("customer_id").to_pylist()) == ["C_UK", "C_US"]
    assert meta["outside_marketplaces"] == 2 and meta["rejected_invalid"] == 0
    logged = {r["customer_id"]: r for r in pq.read_table(meta["rejections_path"]).to_pylist()}
    assert logged["C_FR"]["filter_id"] == "marketplaces" and "marketplace FR" in logged["C_FR"]["reason"]
    assert logged["C_NONE"]["reason"].startswith("marketplace unknown")
    # The same rows with every marketplace listed (the shipped config): only the unknown one stays out.
    at, meta = source_partition(REFUNDS, warehouse, rejections.base_path, set(), window)
    everywhere = pq.read_table(at)
    assert sorted(everywhere.column("customer_id").to_pylist()) == ["C_FR", "C_UK", "C_US"]


def _reordered(program: ProgramConfig, priorities: dict[str, int]) -> ProgramConfig:
    channels = [
        ch.model_copy(update={"priority": priorities.get(ch.channelId, ch.priority)}) for ch in program.channels
    ]
    return program.model_copy(update={"channels": channels})


def test_priority_orders_the_plan_and_the_stored_candidates_channels():
    # Churn's channels in config order: email (1), phone (1), in-app (2).  Put the in-app message first.
    program = _reordered(CHURN, {"in-app": 1, "email": 2, "phone": 3})
    assert [ch.channelId for ch in by_priority(program.channels)] == ["in-app", "email", "phone"]
    assert [ch.channelId for ch in by_priority(CHURN.channels)] == ["email", "phone", "in-app"]  # ties: config order
    critical = next(s for s in CHURN.strategy.segments if s.scoreRange[1] >= 1.0)
    offers = pa.table(
        {
            "customer_id": ["C1"],
            "segment": [critical.name],
            "offer_type": [critical.offer_type],
            "holdout": [False],
            "score": [0.9],
            "marketplace": ["US"],
            "time_zone": ["America/New_York"],
        }
    )
    plan = plan_touches(program, offers, None, datetime(2026, 11, 9, 12, tzinfo=UTC), "2026-11-09")
    assert plan.column("channelId").to_pylist() == ["in-app", "email", "phone"]
    scored = offers.append_column("offer_value_usd", pa.array([10.0]))
    for model in program.scoringModels:
        scored = scored.append_column(pipeline.score_column(model.modelId), pa.array([0.9]))
    records = pipeline.candidate_records(
        program,
        scored,
        "2026-11-09",
        datetime(2026, 11, 10, tzinfo=UTC),
        {},
    )
    assert records[0]["channels"] == ["in-app", "email", "phone"]


P = "win-back-campaigns"
NOW = int(datetime(2026, 8, 10, 12, 0, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(("first", "second"), [("sms", "push"), ("push", "sms")])
def test_where_a_cap_leaves_one_slot_the_higher_priority_channel_gets_it(tmp_path, first, second):
    """Two touches of one customer due together, room for one under the global cap: the channel with priority 1
    is sent and the other suppressed, whichever order the ledger lists them in (touch keys sort `push` < `sms`)."""
    ledger = DeliveryLedger(tmp_path / "delivery.sqlite")
    rows = [{"customerId": "c1", "channel": ch, "touchId": "t1"} for ch in ("sms", "push")]
    ledger.plan(plan_table(P, "p1", rows), P, "p1", NOW)
    engine = DeliveryEngine(
        ledger,
        {"sms": OutboxSmsChannel(root=str(tmp_path / "outbox")), "push": OutboxPushChannel(root=str(tmp_path / "o"))},
        FakeCustomerState({"c1": contact("c1")}),
        FakeRenderer(),
        PressurePolicy(global_cap=1, quiet_start=dtime(0, 0), quiet_end=dtime(0, 0)),
        EngineConfig(inline_backoff_s=0.001, channel_priority={(P, first): 1, (P, second): 2}),
    )
    stats = engine.run([P], NOW)
    assert stats.by_channel() == {first: {"sent": 1}, second: {"suppressed": 1}}
    assert ledger.get(f"{P}#c1#s-c1#t1#{second}").reason == "global_cap"
