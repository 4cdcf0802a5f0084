"""Closing the loop locally: the response simulator's events go through the outcome webhooks' path (recorded once,
bounces to the suppression list, an unknown touch kept aside), the daily export writes the `outcomes` platform table,
the outcome store lists a day on both backends, and the send-time "only if not converted" check reads the real
conversions (`marts.conversions`) so a customer who converted after touch 1 gets touch 2 suppressed `converted`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engage_assets.assets.outcomes_export import export_outcomes_day
from engage_assets.delivery.engine import DeliveryEngine, EngineConfig
from engage_assets.demo.response_runner import as_outcome, run_simulator, write_conversions
from engage_assets.demo.response_simulator import ResponseParams
from engage_assets.domain.contacts import CONTACT_COLUMNS
from engage_assets.domain.history import ASSIGNMENT_SCHEMA, CONTACT_SCHEMA, offer_id
from engage_assets.domain.loop_tables import CONVERSION_SCHEMA
from engage_assets.domain.outcomes import Outcome
from engage_assets.domain.pressure import PressurePolicy
from resources.channels.outbox import OutboxSmsChannel
from resources.customer_state import CustomerState
from resources.delivery_ledger.base import idempotency_key
from resources.delivery_ledger.sqlite import DeliveryLedger
from resources.exports.local import LocalParquetExports
from resources.outcomes.base import TouchRef
from resources.outcomes.sqlite import SqliteOutcomeStore
from resources.warehouse.duckdb import DuckDBWarehouse
from tests.delivery_support import FakeRenderer, FakeTemplateError, plan_table
from tests.test_outcome_store import store  # noqa: F401  (the fixture: SQLite and DynamoDB on moto)

P = "churn-prevention"
DAY = date(2026, 11, 9)
T0 = int(datetime(2026, 11, 9, 12, 0, tzinfo=UTC).timestamp())


def test_a_day_of_outcomes_is_listed_and_exported(store, tmp_path):  # noqa: F811
    touch = TouchRef("ref-1", P, "C1")
    day_start = int(datetime(2026, 11, 9, tzinfo=UTC).timestamp())
    for i, (at, kind) in enumerate([(-1, "delivered"), (0, "delivered"), (3600, "opened"), (86_399, "clicked")]):
        store.record(Outcome(f"e{i}", "ses", "ses-1", "email", kind, day_start + at), touch, T0)
    store.record(Outcome("e9", "ses", "ses-9", "email", "delivered", day_start + 10), None, T0)  # unknown touch
    store.record(Outcome("e8", "ses", "ses-1", "email", "delayed", day_start + 20), touch, T0)
    rows = store.between(day_start, day_start + 86_400)
    assert [r["eventId"] for r in rows] == ["e1", "e9", "e8", "e2", "e3"]
    history = LocalParquetExports(root=str(tmp_path / "history"), warehouse_path=str(tmp_path / "w.duckdb"))
    meta = export_outcomes_day(store, history, "2026-11-09")
    assert meta["dagster/row_count"] == 3 and meta["left_out/unmatched"] == 1 and meta["left_out/kind:delayed"] == 1
    table = history.read_partition("outcomes", "2026-11-09")
    assert table.column("event_type").to_pylist() == ["delivered", "open", "click"]
    assert table.column("simulated").to_pylist() == [False] * 3
    assert set(table.column("touch_ref").to_pylist()) == {"ref-1"}
    # A re-run replaces the day: the same rows, once.
    export_outcomes_day(store, history, "2026-11-09")
    assert history.read_partition("outcomes", "2026-11-09").num_rows == 3


def _sent_touches(ledger: DeliveryLedger, n: int, history: LocalParquetExports) -> None:
    """n treated customers (one e-mail each, sent, with a provider id) and one held out, in ledger and history."""
    rows = [{"customerId": f"c{i}", "channel": "email"} for i in range(n)]
    ledger.plan(plan_table(P, DAY.isoformat(), rows), P, DAY.isoformat(), T0)
    contacts, assignments = [], []
    for i in range(n + 1):
        assignments.append(
            {
                "offer_id": offer_id(P, DAY.isoformat(), f"s-c{i}"),
                "customer_id": f"c{i}",
                "program_id": P,
                "partition_key": DAY.isoformat(),
                "subject_id": f"s-c{i}",
                "segment": "high",
                "offer_type": "standard",
                "holdout": i == n,
                "amount_usd": 10.0,
                "assigned_date": DAY,
            }
        )
        if i == n:
            continue
        key = f"{P}#c{i}#s-c{i}#t1#email"
        with ledger.transaction() as conn:
            assert ledger.claim(conn, key, "tok", T0)
        ledger.mark_sent(key, "tok", f"msg-{i}", T0)
        contacts.append(
            {
                "touch_ref": idempotency_key(key),
                "offer_id": offer_id(P, DAY.isoformat(), f"s-c{i}"),
                "customer_id": f"c{i}",
                "program_id": P,
                "partition_key": DAY.isoformat(),
                "subject_id": f"s-c{i}",
                "touch_id": "t1",
                "channel": "email",
                "channel_id": "email",
                "provider_id": f"msg-{i}",
                "sent_at": datetime.fromtimestamp(T0, UTC).replace(tzinfo=None),
                "contact_date": DAY,
            }
        )
    # A touch the ledger never sent (its provider id is unknown): its events are kept aside.
    contacts.append({**contacts[0], "touch_ref": "stray", "provider_id": "msg-unknown", "customer_id": "c-x"})
    history.write_partition(
        f"contacts_{P.replace('-', '_')}", DAY.isoformat(), pa.Table.from_pylist(contacts, schema=CONTACT_SCHEMA)
    )
    history.write_partition(
        f"assignments_{P.replace('-', '_')}",
        DAY.isoformat(),
        pa.Table.from_pylist(assignments, schema=ASSIGNMENT_SCHEMA),
    )


def test_simulated_events_go_through_the_webhook_path_once(tmp_path):
    ledger = DeliveryLedger(tmp_path / "delivery.sqlite")
    outcomes = SqliteOutcomeStore(path=str(tmp_path / "outcomes.sqlite"))
    history = LocalParquetExports(root=str(tmp_path / "history"), warehouse_path=str(tmp_path / "w.duckdb"))
    _sent_touches(ledger, 300, history)
    params = ResponseParams(bounce_rate=0.2, permanent_share=1.0)

    def contacts_of(ids):
        return {c: {"email": f"{c}@example.org"} for c in ids}

    first = run_simulator(history, outcomes, ledger, seed=5, params=params, contacts_of=contacts_of)
    assert first["recorded"] > 300 and first["duplicates"] == 0
    assert first["unmatched"] >= 1  # the stray touch's events
    (stray,) = [r for r in outcomes.for_provider_id("msg-unknown") if r["kind"] in ("delivered", "bounced")]
    assert stray["unmatched"] == "unknown provider message id" and stray["touchRef"] is None
    recorded = outcomes.for_provider_id("msg-0")
    assert recorded and {r["provider"] for r in recorded} == {"simulator"} and recorded[0]["customerId"] == "c0"
    # Permanent bounces reached the suppression list (keyed hashes of the addresses the warehouse gave).
    bounced = {r["customer_id"] for r in _exported(history) if r["event_type"] == "bounce"}
    assert bounced
    with ledger.transaction() as conn:
        listed = ledger.suppressed_addresses(conn, "email", [f"{c}@example.org" for c in bounced])
    assert len(listed) == len(bounced)
    # The export of the day says simulated=true on every row.
    assert {r["simulated"] for r in _exported(history)} == {True}
    # Twice: nothing new is recorded; the conversions files are rewritten with the same rows.
    convs = pq.read_table(tmp_path / "history" / "conversions").num_rows
    second = run_simulator(history, outcomes, ledger, seed=5, params=params, contacts_of=contacts_of)
    assert second["recorded"] == 0 and second["duplicates"] == first["recorded"]
    assert pq.read_table(tmp_path / "history" / "conversions").num_rows == convs
    outcomes.close()
    ledger.close()


def _exported(history: LocalParquetExports) -> list[dict]:
    return [r for k in history.partition_keys("outcomes") for r in history.read_partition("outcomes", k).to_pylist()]


def test_events_and_conversions_after_until_wait(tmp_path):
    ledger = DeliveryLedger(tmp_path / "delivery.sqlite")
    outcomes = SqliteOutcomeStore(path=str(tmp_path / "outcomes.sqlite"))
    history = LocalParquetExports(root=str(tmp_path / "history"), warehouse_path=str(tmp_path / "w.duckdb"))
    _sent_touches(ledger, 200, history)
    until = datetime.fromtimestamp(T0, UTC) + timedelta(hours=1)
    early = run_simulator(history, outcomes, ledger, seed=2, until=until)
    later = run_simulator(history, outcomes, ledger, seed=2)
    assert early["recorded"] and later["recorded"]  # opens after the first hour came the second time
    assert all(datetime.fromtimestamp(r["occurredAt"], UTC) <= until for r in outcomes.between(0, T0 + 3600))
    assert later["conversions"] > early["conversions"]
    outcomes.close()
    ledger.close()


def test_an_unknown_conversion_type_is_refused():
    from engage_assets.domain.loop_tables import check_conversions

    bad = pa.table({n: pa.nulls(1, f.type) for n, f in zip(CONVERSION_SCHEMA.names, CONVERSION_SCHEMA, strict=True)})
    bad = bad.set_column(2, "conversion_type", pa.array(["purchase"]))
    with pytest.raises(ValueError, match="unknown conversion_type 'purchase'"):
        check_conversions(bad)


def test_as_outcome_names_the_store_kind():
    row = {
        "event_id": "sim:r:open",
        "event_type": "open",
        "permanent": False,
        "occurred_at": datetime(2026, 11, 9, 12),
        "provider_id": "m",
        "channel": "email",
    }
    outcome = as_outcome(row, ("a@example.org",))
    assert (outcome.kind, outcome.provider, outcome.addresses) == ("opened", "simulator", ())


def test_a_customer_who_converted_after_touch_one_gets_touch_two_suppressed(tmp_path):
    """The real CustomerState over a DuckDB warehouse whose marts.conversions reads the conversions files (as the dbt
    view does), the real engine and ledger: touch 1 goes out, c1 converts, touch 2 is suppressed `converted` for c1
    and sent to c2."""
    home = tmp_path / "history"
    history = LocalParquetExports(root=str(home), warehouse_path=str(tmp_path / "exports.duckdb"))
    path = str(tmp_path / "warehouse.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE SCHEMA marts")
    con.execute(f"CREATE TABLE marts.customers ({', '.join(f'{c} VARCHAR' for c in CONTACT_COLUMNS)})")
    for c in ("c1", "c2"):
        con.execute(
            "INSERT INTO marts.customers (customer_id, account_status, marketplace, phone, sms_opt_in) "
            "VALUES (?, 'active', 'US', '+15550100', 'true')",
            [c],
        )
    con.execute(
        "CREATE VIEW marts.conversions AS SELECT customer_id, occurred_at FROM (SELECT CAST(NULL AS VARCHAR) AS "
        "customer_id, CAST(NULL AS TIMESTAMP) AS occurred_at WHERE false UNION ALL BY NAME SELECT * FROM read_parquet("
        f"'{home}/conversions/partition_key=*/candidates.parquet', allow_empty = true, union_by_name = true, "
        "hive_partitioning = false))"
    )
    con.close()
    ledger = DeliveryLedger(tmp_path / "delivery.sqlite")
    state = CustomerState(warehouse=DuckDBWarehouse(path=path))
    engine = DeliveryEngine(
        ledger,
        {"sms": OutboxSmsChannel(root=str(tmp_path / "outbox"))},
        state,
        FakeRenderer(),
        PressurePolicy(quiet_start=datetime.min.time(), quiet_end=datetime.min.time()),
        EngineConfig(inline_backoff_s=0.001),
        template_errors=(FakeTemplateError,),
    )
    rows = [
        {"customerId": c, "channel": "sms", "touchId": t, "dueAt": T0 + due, "conditions": ["not_converted"]}
        for c in ("c1", "c2")
        for t, due in (("t1", 0), ("t2", 86_400))
    ]
    ledger.plan(plan_table(P, DAY.isoformat(), rows), P, DAY.isoformat(), T0)
    assert engine.run([P], T0 + 60).by_channel() == {"sms": {"sent": 2}}
    converted = datetime.fromtimestamp(T0 + 3_600, UTC).replace(tzinfo=None)
    conversion = {n: None for n in CONVERSION_SCHEMA.names} | {
        "conversion_id": "o-1",
        "customer_id": "c1",
        "conversion_type": "order_placed",
        "occurred_at": converted,
        "value_usd": 40.0,
        "simulated": True,
    }
    write_conversions(history, pa.Table.from_pylist([conversion], schema=CONVERSION_SCHEMA))
    engine.run([P], T0 + 86_400 + 60)
    assert ledger.get(f"{P}#c1#s-c1#t2#sms").reason == "converted"
    assert ledger.get(f"{P}#c2#s-c2#t2#sms").state == "sent"
    ledger.close()


def test_the_truth_is_the_generators_own_process(tmp_path):
    """generator_truth computes, for today's customers, the process the generator draws its labels from: the same
    function reproduces the generator's `true_p_*` columns, and a customer without features gets the hashed one."""
    import numpy as np

    from engage_assets.demo.datagen import outcomes as gen
    from engage_assets.demo.datagen.common import Populations
    from engage_assets.demo.response_runner import generator_truth, hidden_truth

    churn = gen.churn_outcomes(np.random.default_rng(3), 500, Populations(1000, 500, 300), date(2026, 11, 9))
    features = [churn.column(c).to_numpy() for c in ("engagement_score", "login_frequency", "purchase_frequency")]
    again = gen.at_risk_p_churn(*features, churn.column("support_tickets").to_numpy())
    assert np.allclose(again, churn.column("true_p_churn").to_numpy())

    path = str(tmp_path / "w.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE SCHEMA marts")
    con.execute(
        "CREATE TABLE marts.customer_analytics (customer_id VARCHAR, snapshot_date DATE, engagement_score DOUBLE, "
        "login_frequency DOUBLE, purchase_frequency DOUBLE, support_tickets INTEGER)"
    )
    con.execute(
        "INSERT INTO marts.customer_analytics VALUES ('c1', DATE '2026-11-02', 0.9, 9, 3, 0), "
        "('c1', DATE '2026-11-09', 0.2, 1, 0.2, 4)"
    )
    con.close()
    warehouse = DuckDBWarehouse(path=path)
    assigned = pa.table({"program_id": [P, P], "customer_id": ["c1", "c2"]})
    got = {r["customer_id"]: r["true_p"] for r in generator_truth(warehouse.query_arrow, assigned).to_pylist()}
    newest = 1 - gen.at_risk_p_churn(np.array([0.2]), np.array([1.0]), np.array([0.2]), np.array([4.0]))[0]
    assert got["c1"] == pytest.approx(newest)  # the newest snapshot's features
    assert got["c2"] == pytest.approx(hidden_truth(["c2"]).column("true_p")[0].as_py())


def test_outcomes_recorded_before_the_day_index_are_exported_after_create_table(moto_endpoint):
    """An outcome item as the store wrote it before the `day` index (no dayPk) is found by `between` once
    `create_table` (engage create-tables on upgrade) has run again; opt-out items are left alone."""
    import uuid

    from resources.outcomes.dynamodb import DynamoDbOutcomeStore

    dynamo = DynamoDbOutcomeStore(
        table_name=f"outcomes-{uuid.uuid4().hex[:10]}", region_name="us-east-1", endpoint_url=moto_endpoint
    )
    dynamo.create_table()
    dynamo.record(Outcome("e1", "ses", "ses-1", "email", "opened", T0), TouchRef("r1", P, "C1"), T0)
    dynamo.add_opt_out("C1", "email", T0)
    client = dynamo.client()
    client.update_item(
        TableName=dynamo.table_name, Key={"pk": {"S": "M#ses-1"}, "sk": {"S": "E#e1"}}, UpdateExpression="REMOVE dayPk"
    )
    assert dynamo.between(T0 - 10, T0 + 10) == []  # the old item: not in the index
    dynamo.create_table()
    assert [r["eventId"] for r in dynamo.between(T0 - 10, T0 + 10)] == ["e1"]
    assert dynamo.opted_out(["C1"]) == {"C1": {"email"}}
    opt_out = client.get_item(TableName=dynamo.table_name, Key={"pk": {"S": "O#C1"}, "sk": {"S": "O"}})["Item"]
    assert "dayPk" not in opt_out
