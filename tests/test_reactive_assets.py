"""The abandoned-cart program in Dagster: the cart-event sensor (durable batches before the ack, stable run keys,
malformed events quarantined) and `cart_decisions` (one hour's batches decided on a small warehouse, idempotent)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow.parquet as pq
import pytest

from engage_assets.assets.reactive import decide_job_name
from engage_assets.assets.reactive.decisions import STAGES, cart_decisions_asset
from engage_assets.assets.reactive.expiry import build_cart_expiry, cart_expiry_job_name, expire_carts
from engage_assets.assets.reactive.family import build_reactive_program
from engage_assets.domain.config import ReactiveProgram, load_programs
from engage_assets.reactive.events import partition_key
from engage_assets.reactive_location import build_event_path
from engage_assets.settings import PROJECT_ROOT
from resources.cart_state.dynamodb import DynamoDbCartState
from resources.cart_state.sqlite import SqliteCartState
from resources.dedup.sqlite import SqliteDedupStore
from resources.delivery_ledger.dynamodb import DynamoDbDeliveryLedger
from resources.delivery_ledger.resource import SqliteDeliveryLedgerResource
from resources.delivery_ledger.sqlite import DeliveryLedger
from resources.event_batches import EventBatchStore, batch_id_of
from resources.events.local import LocalEventQueue
from resources.exports.local import LocalParquetExports
from resources.scoring.local import LocalScoringResource
from resources.staging import ModelStoreResource
from resources.store.sqlite import SqliteCandidateStore
from resources.warehouse.duckdb import DuckDBWarehouse
from sensors.cart_events import build_cart_event_sensor, drain_events, hour_partition
from tests.delivery_support import plan_table
from tests.test_cart_decision import PROGRAM, envelope, model_root, people, warehouse  # noqa: F401 - fixtures

OP = f"{PROGRAM.group}__cart_decisions"


def cart_body(customer: str, cart: str, at: datetime, value: float = 150.0) -> str:
    detail = {
        "customerId": customer,
        "cartId": cart,
        "cartValue": value,
        "currency": "USD",
        "itemCount": 1,
        "items": [{"id": "P00000", "name": "item", "price": value}],
        "abandonmentReason": "session_timeout",
        "timestamp": at.isoformat(),
    }
    return json.dumps(envelope("CartAbandoned", detail, f"ev-{cart}", at))


@pytest.fixture
def queue(tmp_path) -> LocalEventQueue:
    return LocalEventQueue(path=str(tmp_path / "events.sqlite"), visibility_timeout_s=0)


@pytest.fixture
def batches(tmp_path) -> EventBatchStore:
    return EventBatchStore(root=str(tmp_path / "event_batches"))


def tick(queue: LocalEventQueue, batches: EventBatchStore, instance: dg.DagsterInstance | None = None):
    sensor = build_cart_event_sensor(PROGRAM, decide_job_name(PROGRAM))
    instance = instance or dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance, resources={"events": queue, "event_batches": batches}) as context:
        return sensor(context), context


# ---- the sensor ---------------------------------------------------------------------------------------------------


def test_the_program_config_is_the_spec_block_and_builds():
    programs = [p for p in load_programs(PROJECT_ROOT / "program_configs") if isinstance(p, ReactiveProgram)]
    assert [p.programId for p in programs] == ["abandoned-cart-recovery"]
    built = build_reactive_program(programs[0], list(programs))  # the main location's part
    keys = {k.to_user_string() for a in built.assets for k in a.keys}
    assert keys == {"abandoned_cart_recovery/purchase_intent_v4_model", "abandoned_cart_recovery/deliveries"}
    event_path = build_event_path(programs)  # the event path's location's part
    assert {k.to_user_string() for a in event_path.assets for k in a.keys} == {
        f"abandoned_cart_recovery/{name}" for name, _ in STAGES
    }
    assert [j.name for j in event_path.jobs] == ["abandoned_cart_recovery_decide"]
    assert [s.name for s in event_path.sensors] == ["abandoned_cart_recovery_cart_events"]
    deliveries = next(a for a in built.assets if a.keys == {dg.AssetKey(["abandoned_cart_recovery", "deliveries"])})
    # The cart's later touches are re-checked against the purchases the cart state records (CartConversions).
    assert "cart_state" in deliveries.required_resource_keys
    assert deliveries.asset_deps[deliveries.key] == {dg.AssetKey(["abandoned_cart_recovery", "touch_plan"])}


def test_good_events_become_durable_batches_with_stable_run_keys(queue, batches):
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    bodies = [cart_body(f"C{i}", f"K{i}", hour + timedelta(minutes=10 * i)) for i in range(3)]
    bodies += [cart_body("C9", "K9", hour + timedelta(hours=1, minutes=5))]
    sent = [r.message_id for r in queue.send(bodies)]
    result, context = tick(queue, batches)

    assert all(isinstance(r, dg.RunRequest) for r in result)
    by_partition = {r.partition_key: r for r in result}
    assert set(by_partition) == {hour_partition(hour), hour_partition(hour + timedelta(hours=1))}
    first = by_partition[hour_partition(hour)]
    expected_id = batch_id_of(sent[:3])
    assert first.run_key == f"{PROGRAM.programId}:{expected_id}"
    assert first.run_config == {"ops": {OP: {"config": {"batch_ids": [expected_id]}}}}
    stored = batches.read(PROGRAM.programId, hour_partition(hour), expected_id)
    assert [line.message_id for line in stored] == sent[:3] and [line.body for line in stored] == bodies[:3]
    assert queue.approximate_depth() == 0  # acked, after the files were written
    assert json.loads(context.cursor) == {"batches": 2, "last_batch": result[-1].tags["engage/event_batch"],
                                          "quarantined": 0, "received": 4}  # fmt: skip


def test_a_malformed_body_is_quarantined_with_its_reason(queue, batches):
    at = datetime.now(UTC) - timedelta(hours=2)
    queue.send(["{not json", cart_body("C1", "K1", at), cart_body("C2", "K2", datetime(2020, 1, 1, tzinfo=UTC))])
    result, _ = tick(queue, batches)
    assert [r.partition_key for r in result] == [hour_partition(at)]
    dead = queue.dead_letters(10)
    assert len(dead) == 2 and "outside_partitions" in {d.reason for d in dead}
    assert all(d.reason for d in dead) and queue.approximate_depth() == 0


def test_under_load_a_tick_takes_the_whole_backlog_in_one_batch_per_hour(queue, batches):
    at = datetime.now(UTC) - timedelta(hours=1)
    queue.send([cart_body(f"C{i}", f"K{i}", at) for i in range(1_200)])  # more than one receive (500)
    result, _ = tick(queue, batches)
    assert len(result) == 1 and result[0].tags["engage/events"] == "1200"
    assert queue.approximate_depth() == 0


def test_backpressure_leaves_the_events_in_the_queue_while_decision_runs_are_in_flight(queue, batches):
    at = datetime.now(UTC) - timedelta(hours=1)
    queue.send([cart_body("C1", "K1", at)])
    with dg.instance_for_test() as instance:
        job = dg.GraphDefinition(name="g", node_defs=[]).to_job(name=decide_job_name(PROGRAM))
        for _ in range(2):  # two decision runs in flight
            instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED)
        result, _ = tick(queue, batches, instance)
        assert isinstance(result, dg.SkipReason) and "wait in the queue" in (result.skip_message or "")
        assert queue.approximate_depth() == 1  # untouched: not even received
        for run in instance.get_runs():
            instance.report_run_failed(run)
        result, _ = tick(queue, batches, instance)
        assert [r.tags["engage/events"] for r in result] == ["1"]


def test_an_empty_queue_is_a_skip(queue, batches):
    result, _ = tick(queue, batches)
    assert isinstance(result, dg.SkipReason)


def test_a_redelivered_batch_gets_the_same_id_and_run_key(queue, batches, monkeypatch):
    at = datetime.now(UTC) - timedelta(hours=1)
    queue.send([cart_body("C1", "K1", at), cart_body("C2", "K2", at)])

    def crash(self, receipts):
        raise RuntimeError("killed between the write and the ack")

    with monkeypatch.context() as m:
        m.setattr(LocalEventQueue, "delete", crash)
        with pytest.raises(RuntimeError):
            drain_events(PROGRAM, queue, batches)
    assert queue.approximate_depth() == 2  # not acked: delivered again
    first_ids = batches.batch_ids(PROGRAM.programId, hour_partition(at))
    result, _ = tick(queue, batches)
    assert [r.run_key for r in result] == [f"{PROGRAM.programId}:{first_ids[0]}"]
    assert batches.batch_ids(PROGRAM.programId, hour_partition(at)) == first_ids
    assert queue.approximate_depth() == 0


# ---- cart_decisions -----------------------------------------------------------------------------------------------


def ledger_rows(path) -> int:
    with sqlite3.connect(path) as con:
        return con.execute("SELECT count(*) FROM touches").fetchone()[0]


def test_cart_decisions_decides_an_hour_and_a_replay_adds_nothing(tmp_path, warehouse, model_root, people, queue):  # noqa: F811
    program = PROGRAM.model_copy(update={"partitionsStart": datetime(2020, 1, 1).date()})
    store = EventBatchStore(root=str(tmp_path / "event_batches"))
    now = max(people["now"], datetime.now(UTC))
    at = min(people["now"], datetime.now(UTC)).replace(minute=5, second=0, microsecond=0) - timedelta(hours=1)
    good = people["good"][:3]
    queue.send([cart_body(c, f"cart-{c}", at + timedelta(minutes=i)) for i, c in enumerate(good)])
    queue.send([cart_body("C99999999", "cart-stranger", at), cart_body(good[0], "cart-small", at, value=20.0)])
    drained = drain_events(program, queue, store)
    assert len(drained.batches) == 1 and drained.batches[0].size == 5
    partition = drained.batches[0].partition

    resources = {
        "warehouse": DuckDBWarehouse(path=str(warehouse)),
        "scoring": LocalScoringResource(),
        "models": ModelStoreResource(root=str(model_root)),
        "store": SqliteCandidateStore(path=str(tmp_path / "store.sqlite")),
        "delivery_ledger": SqliteDeliveryLedgerResource(path=str(tmp_path / "delivery.sqlite")),
        "dedup": SqliteDedupStore(path=str(tmp_path / "reactive.sqlite")),
        "cart_state": SqliteCartState(path=str(tmp_path / "reactive.sqlite")),
        "event_batches": store,
        "platform_history": LocalParquetExports(root=str(tmp_path / "history"), warehouse_path=str(warehouse)),
    }
    asset = cart_decisions_asset(program)
    config = {"ops": {OP: {"config": {"as_of": now.isoformat()}}}}

    def run(key: str = partition) -> dict:
        result = dg.materialize([asset], resources=resources, partition_key=key, run_config=config)
        assert result.success
        mats = result.asset_materializations_for_node(OP)
        # every stage materialized, in lineage order; each stage's row count kept apart, the other keys merged
        assert [m.asset_key.path[-1] for m in mats] == [name for name, _ in STAGES]
        meta = {}
        for mat in mats:
            for k, v in mat.metadata.items():
                meta[f"rows/{mat.asset_key.path[-1]}" if k == "dagster/row_count" else k] = v.value
        return meta

    meta = run()
    assert meta["batches"] == 1 and meta["stage/received"] == 5 and meta["stage/claimed"] == 5
    assert meta["quarantined/unknown_customer"] == 1 and meta["removed/cart-value"] == 1
    assert meta["rows/stored_candidates"] == meta["stage/stored"] > 0
    assert meta["rows/eligible_candidates"] == meta["stage/eligible"] >= meta["rows/offers"] == meta["stage/stored"]
    assert meta["rows/touch_plan"] == meta["stage/touches"] and 0 < meta["mean_score"] < 1
    assert meta["touches/email"] > 0 and meta["touches_inserted"] == meta["stage/touches"]
    assert "| cart-value |" in meta["funnel"]
    touches = ledger_rows(tmp_path / "delivery.sqlite")
    assert touches == meta["stage/touches"] > 0
    # Its stored candidates, the holdout included, are the program's assignments (the control group for lift).
    assigned = pq.ParquetDataset(tmp_path / "history" / f"assignments_{program.group}", partitioning=None).read()
    assert assigned.num_rows == meta["stage/stored"]
    assert sum(assigned.column("holdout").to_pylist()) == meta["holdout"]

    again = run()  # the hour replayed: every key already decided
    # the stranger was quarantined (its claim released), so it is claimed and quarantined again
    assert again["stage/claimed"] == 1 and again["duplicates"] == 4 and again["rows/stored_candidates"] == 0
    assert again["touches_inserted"] == 0 and ledger_rows(tmp_path / "delivery.sqlite") == touches
    empty = run("2021-01-01-00:00")  # an hour without batches: nothing to decide
    assert empty["batches"] == 0 and empty["stage/received"] == 0 and empty["rows/stored_candidates"] == 0


def test_a_failed_blocking_dbt_test_on_a_mart_it_reads_stops_the_decision(tmp_path):
    """A `dbt build` whose blocking test on marts.carts failed (recorded in the instance, any run) stops the decision
    stages before they read an event, naming the test — however the run was launched."""
    test = "unique_carts_cart_id"

    @dg.asset(
        key=dg.AssetKey(["warehouse", "carts"]), check_specs=[dg.AssetCheckSpec(test, asset=["warehouse", "carts"])]
    )
    def carts():
        yield dg.Output(None)
        yield dg.AssetCheckResult(check_name=test, passed=False, severity=dg.AssetCheckSeverity.ERROR)

    with dg.instance_for_test() as instance:
        dg.materialize([carts], instance=instance, raise_on_error=False)  # records the failed test
        result = dg.materialize(
            [cart_decisions_asset(PROGRAM)],
            instance=instance,
            partition_key="2026-11-30-10:00",
            resources={  # never opened: the guard fails first
                "warehouse": DuckDBWarehouse(path=str(tmp_path / "absent.duckdb")),
                "scoring": LocalScoringResource(),
                "models": ModelStoreResource(root=str(tmp_path / "models")),
                "store": SqliteCandidateStore(path=str(tmp_path / "store.sqlite")),
                "delivery_ledger": SqliteDeliveryLedgerResource(path=str(tmp_path / "delivery.sqlite")),
                "dedup": SqliteDedupStore(path=str(tmp_path / "reactive.sqlite")),
                "cart_state": SqliteCartState(path=str(tmp_path / "reactive.sqlite")),
                "event_batches": EventBatchStore(root=str(tmp_path / "batches")),
                "platform_history": LocalParquetExports(root=str(tmp_path / "h"), warehouse_path=str(tmp_path / "w")),
            },
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert f"warehouse/carts: {test}" in str(failure.step_failure_data.user_failure_data.description)


# ---- `engage run`'s cart burst ------------------------------------------------------------------------------------


def test_the_cli_burst_drains_the_queue_through_the_decide_job(tmp_path, warehouse, model_root, monkeypatch, capsys):  # noqa: F811
    import shutil

    from engage_assets.cli.carts import run_cart_burst
    from engage_assets.definitions import build_definitions
    from engage_assets.settings import get_settings

    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ENGAGE_WAREHOUSE_PATH", str(warehouse))
    settings = get_settings()
    shutil.copytree(model_root, settings.model_root)
    defs = build_definitions()
    programs = [p for p in load_programs(PROJECT_ROOT / "program_configs") if isinstance(p, ReactiveProgram)]
    with dg.instance_for_test() as instance:
        assert run_cart_burst(defs, instance, settings, programs, count=200)
        runs = instance.get_runs(dg.RunsFilter(job_name=decide_job_name(programs[0])))
    out = capsys.readouterr().out
    assert "200 simulated cart events" in out and "events received" in out and "candidates stored" in out
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert LocalEventQueue(path=str(settings.events_path)).approximate_depth() == 0


# ---- cart expiry --------------------------------------------------------------------------------------------------

NOW = datetime(2026, 8, 20, 12, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "dynamodb"])
def expiry_parts(request, tmp_path):
    """(ledger, cart state) on one backend pair: SQLite files, or DynamoDB tables on the moto server."""
    if request.param == "sqlite":
        return DeliveryLedger(tmp_path / "delivery.sqlite"), SqliteCartState(path=str(tmp_path / "reactive.sqlite"))
    endpoint, suffix = request.getfixturevalue("moto_endpoint"), uuid.uuid4().hex[:12]
    ledger = DynamoDbDeliveryLedger(f"delivery-{suffix}", region_name="us-east-1", endpoint_url=endpoint)
    ledger.create_table()
    state = DynamoDbCartState(table_name=f"reactive-{suffix}", region_name="us-east-1", endpoint_url=endpoint)
    state.create_table()
    return ledger, state


def decided_cart(ledger, customer: str, cart: str, abandoned: datetime) -> dict[str, str]:
    """A cart's touches as `cart_decisions` plans them (its own partition; e-mail, SMS, push); their touch keys."""
    part = partition_key(abandoned, cart)
    rows = [{"customerId": customer, "subjectId": cart, "channel": ch} for ch in ("email", "sms", "push")]
    ledger.plan(plan_table(PROGRAM.programId, part, rows), PROGRAM.programId, part, int(abandoned.timestamp()))
    return {ch: f"{PROGRAM.programId}#{customer}#{cart}#t1#{ch}" for ch in ("email", "sms", "push")}


def states(ledger, keys: dict[str, str]) -> dict[str, tuple]:
    return {ch: (ledger.get(k).state, ledger.get(k).reason) for ch, k in keys.items()}


def test_cart_expiry_cancels_an_old_carts_planned_touches_once(expiry_parts):
    ledger, cart_state = expiry_parts
    old = decided_cart(ledger, "C1", "cart-old", NOW - timedelta(days=8))
    recent = decided_cart(ledger, "C2", "cart-recent", NOW - timedelta(days=2))
    at = int((NOW - timedelta(days=8)).timestamp())
    with ledger.transaction() as conn:
        assert ledger.claim(conn, old["email"], "tok", at)
    assert ledger.mark_sent(old["email"], "tok", "msg-1", at)

    assert expire_carts(PROGRAM, ledger, cart_state, NOW) == {
        "carts_seen": 1,
        "carts_expired": 1,
        "touches_cancelled": 2,
    }
    assert states(ledger, old) == {
        "email": ("sent", None),
        "sms": ("suppressed", "expired"),
        "push": ("suppressed", "expired"),
    }
    assert set(states(ledger, recent).values()) == {("planned", None)}
    assert cart_state.expired_carts(PROGRAM.programId, ["cart-old", "cart-recent"]) == {"cart-old": NOW.timestamp()}
    # Twice: nothing left to change, the first expiry time stands.
    later = NOW + timedelta(minutes=30)
    assert expire_carts(PROGRAM, ledger, cart_state, later) == {
        "carts_seen": 1,
        "carts_expired": 0,
        "touches_cancelled": 0,
    }
    assert cart_state.expired_carts(PROGRAM.programId, ["cart-old"]) == {"cart-old": NOW.timestamp()}
    assert cart_state.expire_carts("another-program", [("C1", "cart-old")], NOW.timestamp()) == [("C1", "cart-old")]
    # Six days later the recent cart is past the TTL too.
    assert expire_carts(PROGRAM, ledger, cart_state, NOW + timedelta(days=6))["touches_cancelled"] == 3
    assert set(states(ledger, recent).values()) == {("suppressed", "expired")}


def test_the_cart_expiry_job_runs_hourly_with_counts(tmp_path):
    job, schedule = build_cart_expiry(PROGRAM)
    assert job.name == cart_expiry_job_name(PROGRAM) == "abandoned_cart_recovery_cart_expiry"
    assert schedule.cron_schedule == "0 * * * *" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    disabled = PROGRAM.model_copy(update={"enabled": False})
    assert build_cart_expiry(disabled)[1].default_status == dg.DefaultScheduleStatus.STOPPED

    ledger_path = tmp_path / "delivery.sqlite"
    decided_cart(DeliveryLedger(ledger_path), "C1", "cart-old", NOW - timedelta(days=8))
    resources = {
        "delivery_ledger": SqliteDeliveryLedgerResource(path=str(ledger_path)),
        "cart_state": SqliteCartState(path=str(tmp_path / "reactive.sqlite")),
    }
    op = f"{PROGRAM.group}__expire_carts"
    config = {"ops": {op: {"config": {"as_of": NOW.isoformat()}}}}
    for expected in ((1, 3), (0, 0)):
        result = job.execute_in_process(resources=resources, run_config=config)
        assert result.success
        (out,) = [e for e in result.all_events if e.is_successful_output]
        meta = {k: v.value for k, v in out.event_specific_data.metadata.items()}
        assert (meta["carts_expired"], meta["touches_cancelled"]) == expected and meta["carts_seen"] == 1
