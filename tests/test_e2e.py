"""End to end on the embedded default: generator → dbt build → model training → every batch program's partition.

Runs the real Dagster jobs (the same `build_definitions()` that `dagster dev` and `engage run` load) against a
scale-0.01 warehouse in a temporary ENGAGE_HOME, and checks what a user of the platform relies on: the store
and the export agree, a bad source row is rejected and counted without failing the partition, re-running a
partition replaces its results, schema drift fails before anything is stored, and partitions are independent.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from engage_assets.demo.datagen import generate

END = date(2026, 11, 22)
PARTITIONS = {"proactive_refunds": "2026-11-21", "churn_prevention": "2026-11-09", "win_back": "2026-10-05"}
PROGRAM_IDS = {
    "proactive_refunds": "proactive-refunds",
    "churn_prevention": "churn-prevention",
    "win_back": "win-back-campaigns",
}
BAD_ORDER = "O_E2E_BAD_DELAY"  # an undamaged order: the severity rule needs its delay
DAMAGED_BAD_ORDER = "O_E2E_BAD_DELAY_DAMAGED"  # a damaged order: qualifies whatever its delay says
NO_FX_ORDER = "O_E2E_NO_FX"  # in a currency with no FX rate: no USD value, so no offer can be priced
STAGES = (
    "source_candidates",
    "eligible_candidates",
    "scored_candidates",
    "offers",
    "stored_candidates",
    "warehouse_export",
)


class Platform:
    def __init__(self, home: Path):
        from engage_assets.definitions import build_definitions

        self.home = home
        self.defs = build_definitions()
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, job: str, partition: str | None = None) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(
            partition_key=partition, instance=self.instance, raise_on_error=False
        )

    def store(self):
        from resources.store.sqlite import SqliteCandidateStore

        return SqliteCandidateStore(path=str(self.home / "store.sqlite"))

    def stored(self, group: str, partition: str) -> int:
        # The clock pinned to the partition's day: candidates expire candidateTTLDays after it.
        now = datetime.fromisoformat(partition).replace(tzinfo=UTC).timestamp() + 86400
        return self.store().count(PROGRAM_IDS[group], partition, now=now)

    def exported(self, group: str, partition: str) -> int:
        path = self.home / "exports" / group / f"partition_key={partition}" / "candidates.parquet"
        return pq.read_metadata(path).num_rows

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.home / "warehouse.duckdb")) as con:
            return con.execute(query, params or []).fetchall()


def _metadata(result: dg.ExecuteInProcessResult, key: list[str]) -> dict:
    mats = [
        e.event_specific_data.materialization
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.event_specific_data.materialization.asset_key == dg.AssetKey(key)
    ]
    assert mats, f"{key} was not materialized"
    return {k: getattr(v, "value", v) for k, v in mats[-1].metadata.items()}


def _stage_files_holding(root: Path, customer: str) -> list[Path]:
    """The stage and rejection files under `root` whose customer_id column holds the customer."""
    out = []
    for path in root.rglob("*.parquet"):
        if "customer_id" in pq.read_schema(path).names:
            ids = pq.read_table(path, columns=["customer_id"]).column("customer_id").cast("string").to_pylist()
            if customer in ids:
                out.append(path)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    home = tmp_path_factory.mktemp("engage_home")
    env = {
        "ENGAGE_HOME": str(home),
        "ENGAGE_WAREHOUSE_PATH": str(home / "warehouse.duckdb"),
        "DBT_TARGET_PATH": str(home / "dbt_target"),
        "ENGAGE_ENV": "local",
        "ENGAGE_SMTP_PORT": str(_free_port()),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        generate(home / "warehouse.duckdb", scale=0.01, seed=11, end_date=END)
        with duckdb.connect(str(home / "warehouse.duckdb")) as con:
            # Order issues of the refunds partition whose delay the tracking system exported as garbage (one
            # undamaged, one damaged), and one in a currency fx_rates lacks; each copies an active customer's order.
            for order_id, condition, delay, currency in (
                (BAD_ORDER, "good", "n/a", None),
                (DAMAGED_BAD_ORDER, "damaged", "n/a", None),
                (NO_FX_ORDER, "damaged", "5", "XXX"),
            ):
                con.execute(
                    """INSERT INTO raw.order_tracking BY NAME
                       SELECT * REPLACE (?::VARCHAR AS order_id, ?::VARCHAR AS delay_days,
                                         coalesce(?::VARCHAR, currency) AS currency, ?::VARCHAR AS item_condition,
                                         0 AS customer_complaints)
                       FROM raw.order_tracking
                       WHERE delivery_date = DATE '2026-11-21'
                         AND customer_id IN (SELECT customer_id FROM raw.customers WHERE account_status = 'active')
                       ORDER BY order_id LIMIT 1""",
                    [order_id, delay, currency, condition],
                )
        p = Platform(home)
        assert p.run("warehouse_build").success, "dbt build failed"
        assert p.run("model_retraining").success, "model training failed"
        yield p


def test_every_program_runs_and_store_matches_export(platform):
    for group, partition in PARTITIONS.items():
        result = platform.run(f"{group}_batch", partition)
        assert result.success, f"{group} {partition} failed"
        for stage in STAGES:
            _metadata(result, [group, stage])
        stored = platform.stored(group, partition)
        offers = _metadata(result, [group, "offers"])["dagster/row_count"]
        assert stored == offers == platform.exported(group, partition) > 0
        # The export is a warehouse table analysts can query.
        (n,) = platform.sql(f"SELECT count(*) FROM exports.{group} WHERE partition_key = ?", [partition])[0]
        assert n == stored
        # The funnel narrows at every stage and the holdout is marked, in the store too.
        src = _metadata(result, [group, "source_candidates"])["dagster/row_count"]
        eligible = _metadata(result, [group, "eligible_candidates"])["dagster/row_count"]
        assert src > eligible >= offers
        (holdout,) = platform.sql(
            f"SELECT count(*) FILTER (WHERE holdout) FROM exports.{group} WHERE partition_key = ?", [partition]
        )[0]
        assert 0 < holdout < stored
    # Win-back's candidates carry the source row's churn reason in their context, and GSI5 serves exactly the
    # offered (not held out) ones of each reason.
    partition = PARTITIONS["win_back"]
    rows = platform.sql(
        "SELECT customer_id, churn_reason FROM exports.win_back WHERE partition_key = ? AND NOT holdout", [partition]
    )
    by_reason: dict[str, set[str]] = {}
    for customer, reason in rows:
        by_reason.setdefault(reason, set()).add(customer)
    assert len(by_reason) > 1
    store = platform.store()
    for reason, customers in by_reason.items():
        page = store.query_by_churn_reason(PROGRAM_IDS["win_back"], reason, since_date=partition, limit=200)
        assert page.next_cursor is None and {r["customerId"] for r in page.items} == customers
        assert {r["context"]["churn_reason"] for r in page.items} == {reason}


def test_bad_source_row_is_rejected_with_reason_and_partition_succeeds(platform):
    result = platform.run("proactive_refunds_batch", PARTITIONS["proactive_refunds"])
    assert result.success
    # The order with no USD value is invalid at the source (a NULL required number never passes).
    meta = _metadata(result, ["proactive_refunds", "source_candidates"])
    assert meta["rejected_invalid"] >= 1
    assert "order_value_usd" in meta["rejections"]
    source_rejected = {r["subject_id"]: r["reason"] for r in pq.read_table(meta["rejections_path"]).to_pylist()}
    assert "order_value_usd" in source_rejected[NO_FX_ORDER]
    # The unparseable delay is the severity rule's to judge: it rejects the undamaged order, naming the delay...
    eligible = _metadata(result, ["proactive_refunds", "eligible_candidates"])
    filtered = {r["subject_id"]: r for r in pq.read_table(eligible["rejections_path"]).to_pylist()}
    assert BAD_ORDER not in source_rejected
    assert filtered[BAD_ORDER]["filter_id"] == "issue-severity" and "delay_days" in filtered[BAD_ORDER]["reason"]
    # ...and never the damaged one, which qualifies by its damage ("delayed OR damaged").
    assert DAMAGED_BAD_ORDER not in source_rejected
    assert filtered.get(DAMAGED_BAD_ORDER, {}).get("filter_id") != "issue-severity"
    # Neither rejected order is in the store or the export.
    for order in (BAD_ORDER, NO_FX_ORDER):
        (n,) = platform.sql("SELECT count(*) FROM exports.proactive_refunds WHERE order_id = ?", [order])[0]
        assert n == 0


def test_rerun_replaces_the_partition(platform):
    group, partition = "proactive_refunds", PARTITIONS["proactive_refunds"]
    assert platform.run(f"{group}_batch", partition).success
    before = platform.stored(group, partition)
    # Re-running changes nothing...
    assert platform.run(f"{group}_batch", partition).success
    assert platform.stored(group, partition) == before == platform.exported(group, partition)
    # ...and when the warehouse loses half the partition's orders, a re-run drops their candidates everywhere.
    platform.sql("""DELETE FROM marts.order_tracking
                    WHERE delivery_date = DATE '2026-11-21' AND hash(order_id) % 2 = 0""")
    assert platform.run(f"{group}_batch", partition).success
    after = platform.stored(group, partition)
    assert 0 < after < before
    assert after == platform.exported(group, partition)


def test_partitions_are_independent(platform):
    """Partitions are independent but for the platform's own history: a week's offers are the next week's history
    (its eligibility look-back excludes them; tests/test_platform_history.py), its holdout is not."""
    group = "churn_prevention"
    first, second = "2026-10-19", "2026-10-26"  # in date order, both older than the week the first test ran
    assert platform.run(f"{group}_batch", first).success
    assert platform.run(f"{group}_batch", second).success
    a, b = platform.stored(group, first), platform.stored(group, second)
    assert a > 0 and b > 0

    def exported_customers(partition: str, offered_only: bool = False) -> set[str]:
        rows = platform.sql(
            f"SELECT customer_id FROM exports.{group} WHERE partition_key = ?" + (" AND NOT holdout" * offered_only),
            [partition],
        )
        return {r[0] for r in rows}

    week1, week2, later = (exported_customers(p) for p in (first, second, PARTITIONS[group]))
    assert week1 & week2 and not exported_customers(first, offered_only=True) & week2
    # The store keeps one live candidate per customer and program (key customerId#programId): a customer in a newer
    # week is that week's candidate. The exports keep each week in full.
    assert platform.exported(group, second) == len(week2) == b + len(week2 & later)
    assert platform.exported(group, first) == len(week1) == a + len(week1 & (week2 | later))
    # Re-running the older week does not take the newer week's customers back.
    assert platform.run(f"{group}_batch", first).success
    assert platform.stored(group, first) == a and platform.stored(group, second) == b
    (n,) = platform.sql(
        f"SELECT count(DISTINCT partition_key) FROM exports.{group} WHERE partition_key < ?", [PARTITIONS[group]]
    )[0]
    assert n == 2


def test_schema_drift_fails_naming_the_column_before_anything_is_stored(platform):
    group, partition = "win_back", "2026-09-07"
    platform.sql("ALTER TABLE marts.churned_customers RENAME COLUMN churn_reason TO reason_for_churn")
    try:
        result = platform.run(f"{group}_batch", partition)
    finally:
        platform.sql("ALTER TABLE marts.churned_customers RENAME COLUMN reason_for_churn TO churn_reason")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "churn_reason" in str(failure.event_specific_data.error_display_string)  # type: ignore[union-attr]
    assert platform.stored(group, partition) == 0
    assert not (platform.home / "exports" / group / f"partition_key={partition}").exists()


def test_definitions_shape(platform):
    defs = platform.defs
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    for group in PARTITIONS:
        assert {f"{group}/{s}" for s in STAGES} <= keys
    assert {"raw/order_tracking", "warehouse/order_tracking", "warehouse/customers"} <= keys
    crons = {s.name: s.cron_schedule for s in defs.schedules}
    assert crons["proactive_refunds_schedule"] == "0 2 * * *"
    assert crons["churn_prevention_schedule"] == "0 2 * * 1"
    assert crons["win_back_schedule"] == "0 2 * * 1#1"
    graph = defs.resolve_asset_graph()
    # Lineage from the dbt source to the export.
    upstream = graph.get(dg.AssetKey(["proactive_refunds", "warehouse_export"]))
    ancestors = set()
    frontier = [upstream.key]
    while frontier:
        node = graph.get(frontier.pop())
        for parent in node.parent_keys:
            if parent not in ancestors:
                ancestors.add(parent)
                frontier.append(parent)
    assert dg.AssetKey(["raw", "order_tracking"]) in ancestors


def _partition_metadata(instance: dg.DagsterInstance, key: list[str], partition: str) -> dict:
    """The metadata of the latest materialization of one partition of an asset, read back from the event log."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{key} {partition} was not materialized"
    return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


# The figures a stage records that depend only on the partition's own data (not on the order partitions ran in).
OWN_FIGURES = ("dagster/row_count", "rows_read", "rejected_invalid", "excluded_erased", "holdout", "offer_cost_usd")


def test_a_date_range_runs_as_one_run_and_each_partition_records_its_own_figures(platform):
    """A single-run backfill (UI, or `dagster asset materialize --partition-range`) of three days: every partition's
    materialization of every stage carries its own figures (row count, per-filter counts, funnel), the same as
    when the day runs alone, and the results match single-partition runs."""
    group, days = "proactive_refunds", ["2026-11-18", "2026-11-19", "2026-11-20"]
    result = platform.defs.resolve_job_def(f"{group}_batch").execute_in_process(
        instance=platform.instance,
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
    )
    assert result.success
    ranged = {d: (platform.stored(group, d), platform.exported(group, d)) for d in days}
    # Newest partition wins in the store (one live candidate per customer and program); exports keep each day.
    assert all(0 < s <= e for s, e in ranged.values()) and ranged[days[-1]][0] == ranged[days[-1]][1]
    stages = (*STAGES, "touch_plan")
    meta = {(stage, d): _partition_metadata(platform.instance, [group, stage], d) for stage in stages for d in days}
    for d in days:
        assert meta[("warehouse_export", d)]["dagster/row_count"] == ranged[d][1]
        assert meta[("stored_candidates", d)]["dagster/row_count"] == ranged[d][1]  # later days then take some
        eligible = meta[("eligible_candidates", d)]
        assert "funnel" in eligible and any(k.startswith("removed/") for k in eligible)
        assert eligible["dagster/row_count"] < meta[("source_candidates", d)]["dagster/row_count"]
        assert all("partitions" not in meta[(stage, d)] for stage in stages)
    for stage in stages:  # no partition carries the range's total
        counts = [meta[(stage, d)]["dagster/row_count"] for d in days]
        assert all(c < sum(counts) for c in counts if c), (stage, counts)
    # The source check ran over the range and found rows in every day.
    [check] = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == "source_not_empty"
    ]
    assert check.passed
    # The same days one at a time leave exactly the same results, and record the same figures.  Within one range run
    # no day sees another's offers (every source is read before any offer is stored); one at a time, a day sees the
    # offers of the days before it in the platform's history: those of the range are removed first, and the days run
    # newest first, so each sees what it saw in the range.
    for d in days:
        (platform.home / "history" / f"offers_{group}" / f"partition_key={d}" / "candidates.parquet").unlink()
    for d in reversed(days):
        assert platform.run(f"{group}_batch", d).success
    assert {d: (platform.stored(group, d), platform.exported(group, d)) for d in days} == ranged
    for (stage, d), ranged_meta in meta.items():
        single = _partition_metadata(platform.instance, [group, stage], d)
        own = [k for k in ranged_meta if k in OWN_FIGURES or k.startswith(("removed/", "offers/", "touches/"))]
        assert {k: single.get(k) for k in own} == {k: ranged_meta[k] for k in own}, (stage, d)


def test_an_empty_source_partition_is_flagged_by_the_source_check(platform):
    """A partition whose source query returns nothing (here: a day after the generated data ends) is flagged by the
    source check with a warning naming it, not a silent success."""
    group, empty = "proactive_refunds", "2026-11-25"
    result = platform.run(f"{group}_batch", empty)
    assert _metadata(result, [group, "source_candidates"])["rows_read"] == 0
    [check] = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == "source_not_empty"
    ]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert empty in check.description and "order_tracking" in check.description
    assert check.metadata["empty_partitions"].value == empty


def test_a_customer_deleted_during_a_run_is_neither_stored_nor_exported_nor_planned(platform):
    """The run computes its offers; the customer is deleted (as the API records it) before the run writes: the store
    write, the export and the touch plan re-check the deletions and leave the customer out, and count it."""
    from resources.engagement.sqlite import SqliteEngagementStore

    group, partition = "proactive_refunds", "2026-11-15"
    job = platform.defs.resolve_job_def(f"{group}_batch")
    first = [
        dg.AssetKey([group, s]) for s in ("source_candidates", "eligible_candidates", "scored_candidates", "offers")
    ]
    assert job.execute_in_process(partition_key=partition, instance=platform.instance, asset_selection=first).success
    offers = pq.read_table(platform.home / "stages" / group / "offers" / f"{partition}.parquet")
    customer = next(r["customer_id"] for r in offers.to_pylist() if not r["holdout"])
    SqliteEngagementStore(path=str(platform.home / "engagement.sqlite")).delete_customer(customer)
    platform.store().delete_customer(customer)  # what the API erases at once (nothing of this run yet)

    rest = [dg.AssetKey([group, s]) for s in ("stored_candidates", "warehouse_export", "touch_plan")]
    result = job.execute_in_process(
        partition_key=partition, instance=platform.instance, asset_selection=rest, raise_on_error=False
    )
    assert result.success
    assert platform.store().customer_candidates(customer) == []
    (n,) = platform.sql(f"SELECT count(*) FROM exports.{group} WHERE customer_id = ?", [customer])[0]
    assert n == 0
    import sqlite3

    ledger = sqlite3.connect(platform.home / "delivery.sqlite")
    assert ledger.execute("SELECT count(*) FROM touches WHERE customer_id = ?", [customer]).fetchone()[0] == 0
    for stage in ("stored_candidates", "warehouse_export", "touch_plan"):
        assert _metadata(result, [group, stage])["excluded_erased"] >= 1, stage


def test_a_gdpr_erased_customer_never_comes_back(platform):
    from resources.engagement.sqlite import SqliteEngagementStore

    group, partition = "proactive_refunds", "2026-11-17"
    assert platform.run(f"{group}_batch", partition).success
    (customer,) = platform.sql(
        f"SELECT customer_id FROM exports.{group} WHERE partition_key = ? ORDER BY customer_id LIMIT 1", [partition]
    )[0]
    SqliteEngagementStore(path=str(platform.home / "engagement.sqlite")).delete_customer(customer)
    platform.store().delete_customer(customer)
    result = platform.run(f"{group}_batch", partition)
    assert result.success
    assert _metadata(result, [group, "source_candidates"])["excluded_erased"] >= 1
    (n,) = platform.sql(f"SELECT count(*) FROM exports.{group} WHERE customer_id = ?", [customer])[0]
    assert n == 0
    assert platform.store().customer_candidates(customer) == []
    rejection_logs = (platform.home / "stages" / group / "rejections").rglob(f"{partition}.parquet")
    assert all(customer not in pq.read_table(p).column("customer_id").to_pylist() for p in rejection_logs)


def test_deliveries_send_each_touch_once_and_never_to_the_holdout(platform, monkeypatch):
    """The batch job planned touches; deliveries as of a day later send them: every e-mail the ledger calls
    sent is an .eml at the capture server, once; held-out candidates got nothing; a second run sends nothing."""
    import sqlite3
    from datetime import timedelta

    from engage_assets.cli.delivery import deliver_all

    group, partition = "churn_prevention", PARTITIONS["churn_prevention"]
    assert platform.run(f"{group}_batch", partition).success
    clock = datetime.fromisoformat("2026-11-17T15:00:00+00:00")  # 10:00 in New York, after 10:00 everywhere east
    first = deliver_all(platform.defs, platform.instance, clock)
    assert first[group].get("email", {}).get("sent", 0) > 0
    ledger = sqlite3.connect(platform.home / "delivery.sqlite")
    sent = dict(
        ledger.execute(
            "SELECT channel, count(*) FROM touches WHERE program_id = 'churn-prevention' "
            "AND state = 'sent' GROUP BY channel"
        ).fetchall()
    )
    held = ledger.execute(
        "SELECT count(*) FROM touches WHERE program_id = 'churn-prevention' AND reason = "
        "'held_out' AND state != 'suppressed'"
    ).fetchone()[0]
    assert held == 0
    emls = list((platform.home / "mail" / "churn-prevention").rglob("*.eml"))
    assert len(emls) == sent["email"]
    # Nothing held out was contacted: their customers have no captured mail.
    (holdout_customers,) = zip(
        *platform.sql(f"SELECT customer_id FROM exports.{group} WHERE partition_key = ? AND holdout", [partition]),
        strict=False,
    )
    text = "\n".join(p.read_text(errors="replace") for p in emls[:500])
    assert not any(f"customer{int(c[1:])}@example.com" in text for c in holdout_customers[:200])
    # A second run at the same clock sends nothing again.
    again = deliver_all(platform.defs, platform.instance, clock + timedelta(minutes=1))
    assert again[group].get("email", {}).get("sent", 0) == 0
    assert len(list((platform.home / "mail" / "churn-prevention").rglob("*.eml"))) == sent["email"]


def test_refund_batch_issues_refunds_and_credits_within_budget_never_to_the_holdout(platform):
    import sqlite3

    group, partition = "proactive_refunds", "2026-11-16"
    assert platform.run(f"{group}_batch", partition).success
    assert platform.run(f"{group}_batch", partition).success  # a re-run issues nothing twice
    ledger = sqlite3.connect(platform.home / "refunds.sqlite")
    rows = ledger.execute(
        "SELECT customer_id, subject_id, kind, amount_usd, state FROM issuances "
        "WHERE program_id = 'proactive-refunds' AND partition_key = ?",
        [partition],
    ).fetchall()
    assert rows and {r[2] for r in rows} <= {"refund", "credit"}
    assert len({(r[0], r[1], r[2]) for r in rows}) == len(rows)
    assert sum(r[3] for r in rows if r[4] != "rejected") <= 400_000  # proactive_refunds.yaml: budget.amount
    holdout = {
        c
        for (c,) in platform.sql(
            f"SELECT customer_id FROM exports.{group} WHERE partition_key = ? AND holdout", [partition]
        )
    }
    assert holdout and not holdout & {r[0] for r in rows}
    # Each processed issuance reached the order and billing systems' event log once, keyed by its id (two runs).
    processed = ledger.execute(
        "SELECT issuance_id, published_at IS NOT NULL FROM issuances WHERE program_id = 'proactive-refunds' "
        "AND partition_key = ? AND state = 'processed'",
        [partition],
    ).fetchall()
    events = sqlite3.connect(platform.home / "refund_events.sqlite").execute("SELECT event_id FROM refund_events")
    logged = [e for (e,) in events]
    assert processed and all(published for _, published in processed) and len(logged) == len(set(logged))
    assert {i for i, _ in processed} <= set(logged)


def test_refund_messages_wait_for_approval_and_go_once_processed(platform):
    """A refund e-mail says the refund was issued: it waits while its refund awaits approval, goes once approved."""
    import sqlite3
    from datetime import timedelta

    from engage_assets.cli.delivery import deliver_all

    partition = "2026-11-16"  # planned and issued by the test above
    refunds = sqlite3.connect(platform.home / "refunds.sqlite")
    issued = refunds.execute(
        "SELECT DISTINCT customer_id, subject_id FROM issuances WHERE program_id = 'proactive-refunds' "
        "AND partition_key = ? AND state = 'processed' ORDER BY customer_id",
        [partition],
    ).fetchall()
    reachable = {
        c
        for (c,) in platform.sql(
            "SELECT customer_id FROM marts.customers WHERE email_opt_in AND NOT marketing_opt_out "
            "AND account_status = 'active'"
        )
    }
    customer, subject = next((c, s) for c, s in issued if c in reachable)
    with refunds:
        refunds.execute(
            "UPDATE issuances SET state = 'pending_approval' WHERE customer_id = ? AND subject_id = ?",
            [customer, subject],
        )
    key = f"proactive-refunds#{customer}#{subject}#initial#email"
    ledger = sqlite3.connect(platform.home / "delivery.sqlite")

    def deliver_day(day: datetime) -> None:  # a send clock every 3 hours, as the sensors would
        for h in range(0, 24, 3):
            deliver_all(platform.defs, platform.instance, day + timedelta(hours=h))

    deliver_day(datetime.fromisoformat("2026-11-18T00:00:00+00:00"))
    state, reason = ledger.execute("SELECT state, reason FROM touches WHERE touch_key = ?", [key]).fetchone()
    assert (state, reason) == ("planned", "deferred:refund_pending_approval")
    others = dict(
        ledger.execute(
            "SELECT state, count(*) FROM touches WHERE program_id = 'proactive-refunds' AND partition_key = ? "
            "AND channel = 'email' AND touch_key != ? GROUP BY state",
            [partition, key],
        ).fetchall()
    )
    assert others.get("sent", 0) > 0 and others.get("planned", 0) == 0
    with refunds:
        refunds.execute(
            "UPDATE issuances SET state = 'processed' WHERE customer_id = ? AND subject_id = ?", [customer, subject]
        )
    deliver_day(datetime.fromisoformat("2026-11-19T00:00:00+00:00"))
    assert ledger.execute("SELECT state FROM touches WHERE touch_key = ?", [key]).fetchone()[0] == "sent"


def test_gdpr_deletion_reaches_planned_touches_and_past_exports(platform):
    """DELETE /v1/customers/{id} on the app `make serve` runs removes the customer's touches (planned or past) from
    the delivery ledger at once; the `gdpr_erasure` job then rewrites the exports written before the deletion; a
    second sweep finds nothing."""
    import sqlite3

    from fastapi.testclient import TestClient

    from engage_assets.serving.auth import create_api_key
    from engage_assets.serving.server import app_from_settings
    from resources.engagement.sqlite import SqliteEngagementStore

    group, partition = "win_back", PARTITIONS["win_back"]
    assert platform.run(f"{group}_batch", partition).success
    ledger = sqlite3.connect(platform.home / "delivery.sqlite")
    # (Other tests of this module may have sent the partition's touches already: any state will do.)
    customer, touches = ledger.execute(
        "SELECT customer_id, count(*) FROM touches WHERE program_id = 'win-back-campaigns' AND partition_key = ? "
        "AND reason IS NOT 'held_out' GROUP BY customer_id ORDER BY customer_id LIMIT 1",
        [partition],
    ).fetchone()
    assert platform.sql(f"SELECT count(*) FROM exports.{group} WHERE customer_id = ?", [customer])[0][0] >= 1

    assert _stage_files_holding(platform.home / "stages", customer)  # the offers of the partition, at least
    key = create_api_key(SqliteEngagementStore(path=str(platform.home / "engagement.sqlite")), ["admin"], "e2e")[1]
    with TestClient(app_from_settings()) as client:
        r = client.delete(f"/v1/customers/{customer}", headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    assert r.json()["other"]["deliveryTouches"] >= touches
    assert ledger.execute("SELECT count(*) FROM touches WHERE customer_id = ?", [customer]).fetchone()[0] == 0
    assert platform.sql(f"SELECT count(*) FROM exports.{group} WHERE customer_id = ?", [customer])[0][0] >= 1

    first = platform.run("gdpr_erasure")
    assert first.success
    meta = {
        k: v.value
        for e in first.all_events
        if e.event_type_value == "STEP_OUTPUT"
        for k, v in e.event_specific_data.metadata.items()
    }
    assert meta["export_rows_removed"] >= 1 and meta["export_partitions_rewritten"] >= 1
    assert platform.sql(f"SELECT count(*) FROM exports.{group} WHERE customer_id = ?", [customer])[0][0] == 0
    # The stage outputs and rejection logs (which the API cannot reach) no longer hold the customer either.
    assert meta["stage_rows_removed"] >= 1 and meta["stage_files_rewritten"] >= 1
    assert not _stage_files_holding(platform.home / "stages", customer)
    again = {
        k: v.value
        for e in platform.run("gdpr_erasure").all_events
        if e.event_type_value == "STEP_OUTPUT"
        for k, v in e.event_specific_data.metadata.items()
    }
    assert again["export_rows_removed"] == 0 and again["ledger_touches_removed"] == 0
    assert customer not in repr(first.all_events)  # counts only: no customer id in the run's events
