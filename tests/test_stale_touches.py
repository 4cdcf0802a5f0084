"""Backfills never contact customers about old events (#13, item 3): a touch planned further in the past than its
program's `delivery.staleAfterHours` is recorded `stale`, never sent; the delivery job's `send_stale` option sends
it anyway (also after an earlier run recorded it stale).  The engine on both ledgers, and the real delivery job
through Dagster with the SMTP capture server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
import yaml

from engage_assets.delivery.engine import DeliveryEngine, EngineConfig
from engage_assets.domain.config import DEFAULT_STALE_AFTER_HOURS, ConfigError, load_program
from resources.channels.outbox import OutboxSmsChannel
from tests.delivery_support import FakeCustomerState, FakeRenderer, contact, outbox_count, plan_table
from tests.test_ledger_dynamodb import NO_QUIET, key, store  # noqa: F401 - `store`: both ledgers, as a fixture

ROOT = Path(__file__).resolve().parent.parent
P = "win-back-campaigns"
NOW = int(datetime(2026, 8, 10, 12, 0, tzinfo=UTC).timestamp())
DAY = 86_400


def _win_back_with(tmp_path: Path, delivery: object) -> Path:
    doc = yaml.safe_load((ROOT / "program_configs" / "win_back.yaml").read_text())
    doc["delivery"] = delivery
    path = tmp_path / "win_back.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_stale_after_hours_is_a_documented_per_program_setting(tmp_path):
    shipped = load_program(ROOT / "program_configs" / "win_back.yaml")
    assert shipped.delivery.staleAfterHours == DEFAULT_STALE_AFTER_HOURS == 72
    assert shipped.delivery.stale_after_s == 72 * 3600
    assert type(shipped.delivery).model_fields["staleAfterHours"].description
    assert load_program(_win_back_with(tmp_path, {"staleAfterHours": 6})).delivery.stale_after_s == 6 * 3600
    for bad in ({"staleAfterHours": 0}, {"staleAfterHours": "soon"}, {"staleAfter": 6}):
        with pytest.raises(ConfigError, match="delivery"):
            load_program(_win_back_with(tmp_path, bad))


def test_old_touches_are_recorded_stale_and_sent_only_when_told(store, tmp_path):  # noqa: F811
    ledger = store()
    people = {c: contact(c) for c in ("old1", "old2", "fresh", "later")}

    def engine(send_stale: bool = False) -> DeliveryEngine:
        return DeliveryEngine(
            store(),
            {"sms": OutboxSmsChannel(root=str(tmp_path / "outbox"))},
            FakeCustomerState(people),
            FakeRenderer(),
            NO_QUIET,
            EngineConfig(inline_backoff_s=0.001, stale_after_s={P: 3 * DAY}, send_stale=send_stale),
        )

    backfill = [{"customerId": c, "channel": "sms", "dueAt": NOW - 30 * DAY} for c in ("old1", "old2")]
    ledger.plan(plan_table(P, "2026-07-06", backfill), P, "2026-07-06", NOW)
    ledger.plan(
        plan_table(P, "2026-08-09", [{"customerId": "fresh", "channel": "sms", "dueAt": NOW - 3600}]),
        P,
        "2026-08-09",
        NOW,
    )
    stats = engine().run([P], NOW)
    assert stats.total("stale") == 2 and stats.total("sent") == 1
    assert outbox_count(tmp_path / "outbox") == 1  # only the fresh touch reached the channel
    for c in ("old1", "old2"):
        row = ledger.get(key(c, "sms"))
        assert (row.state, row.reason, row.attempts) == ("stale", "older_than:72h", 0)
    assert ledger.due_summary(P, NOW) == (0, None)
    assert engine().run([P], NOW + 60).total() == 0  # stale is final for ordinary runs

    # The explicit option: the stale touches are planned again and sent, as is a still-planned old one.
    ledger.plan(
        plan_table(P, "2026-07-13", [{"customerId": "later", "channel": "sms", "dueAt": NOW - 20 * DAY}]),
        P,
        "2026-07-13",
        NOW,
    )
    told = engine(send_stale=True).run([P], NOW + 120)
    assert told.reopened == 2 and told.total("sent") == 3 and told.total("stale") == 0
    assert outbox_count(tmp_path / "outbox") == 4
    assert {ledger.get(key(c, "sms")).state for c in people} == {"sent"}


@pytest.fixture
def local_platform(tmp_path, monkeypatch):
    """The local Definitions over a one-table warehouse (three customers in marts.customers)."""
    from engage_assets.demo.smtp_capture import free_port

    home = tmp_path / "home"
    home.mkdir()
    for var, value in {"ENGAGE_HOME": str(home), "ENGAGE_ENV": "local", "ENGAGE_SMTP_PORT": str(free_port())}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("ENGAGE_PROGRAM_CONFIGS", raising=False)
    monkeypatch.delenv("ENGAGE_WAREHOUSE_PATH", raising=False)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute(
            "CREATE TABLE marts.customers AS SELECT 'C' || i AS customer_id, 'Name ' || i AS customer_name,"
            " 'c' || i || '@example.com' AS email, '+1555000000' || i AS phone, 'US' AS marketplace,"
            " 'UTC' AS time_zone, 'active' AS account_status, true AS email_opt_in, true AS sms_opt_in,"
            " true AS push_opt_in, true AS phone_opt_in, false AS marketing_opt_out FROM range(3) t(i)"
        )
    from engage_assets.definitions import build_definitions

    return home, build_definitions()


def test_a_backfilled_partition_reaches_no_one_unless_the_delivery_job_is_told(local_platform):
    from engage_assets.cli.delivery import deliver_all
    from resources.delivery_ledger.sqlite import DeliveryLedger

    home, defs = local_platform
    clock = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    due = int((clock - timedelta(days=28)).timestamp())  # last month's partition, backfilled today
    rows = [{"customerId": f"C{i}", "channel": "email", "templateId": "win-back-v4", "dueAt": due} for i in range(3)]
    plan = plan_table(P, "2026-10-05", rows)
    plan = plan.set_column(
        plan.column_names.index("offer"), "offer", pa.array([json.dumps({"discountPercent": 50, "duration": 3})] * 3)
    )
    ledger = DeliveryLedger(home / "delivery.sqlite")
    ledger.plan(plan, P, "2026-10-05", int(clock.timestamp()))
    instance = dg.DagsterInstance.ephemeral()

    first = deliver_all(defs, instance, clock)
    assert first["win_back"] == {"email": {"stale": 3}}
    assert not list((home / "mail").rglob("*.eml"))  # nothing reached the SMTP capture server
    assert ledger.counts(P) == {(P, "email", "stale", "older_than:72h"): 3}

    told = deliver_all(defs, instance, clock + timedelta(minutes=5), send_stale=True)
    assert told["win_back"] == {"email": {"sent": 3}}
    assert len(list((home / "mail" / P).rglob("*.eml"))) == 3
    assert ledger.counts(P) == {(P, "email", "sent", None): 3}
