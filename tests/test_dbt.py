"""The dbt project run through Dagster against a small generated warehouse: marts, contracts, asset checks."""

import json
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from engage_assets.assets.dbt import build_dbt_assets, mart_asset_key, mart_names
from engage_assets.demo.datagen import generate
from resources.dbt import dbt_project, dbt_resource

engage_dbt_assets = build_dbt_assets()

MARTS = {
    "order_tracking",
    "churned_customers",
    "customer_analytics",
    "customers",
    "cart_customer_context",
    "offer_history",
    "contact_history",
    "training_refund_outcomes",
    "training_winback_outcomes",
    "training_churn_outcomes",
    "carts",
    "training_cart_outcomes",
    "conversions",
}
# Views over the platform's own history files and the business's conversions (current without a build): no row count,
# and contact_history and conversions are empty until a delivery run has sent something and conversions are loaded.
VIEW_MARTS = {"offer_history", "contact_history", "conversions"}
# The spec's metrics (models/metrics, tables too): empty until the platform has written history.
METRIC_TABLES = {
    "offer_conversions",
    "touch_events",
    "touch_attribution",
    "holdout_lift",
    "program_funnel",
    "program_metrics",
    "program_daily_metrics",
}
PURCHASE_INTENT_FEATURES = ["purchase_history", "cart_value", "email_engagement", "discount_sensitivity"]
BAD_ORDER = "O_BAD_DELAY"
RELOADED_ORDER = "O0000000001"


def _contract(model: str) -> dict[str, str]:
    """Column -> contracted data_type of a model, from the manifest."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    node = manifest["nodes"][f"model.engage.{model}"]
    return {name: col["data_type"] for name, col in node["columns"].items()}


def _build(warehouse: Path) -> dg.ExecuteInProcessResult:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENGAGE_WAREHOUSE_PATH", str(warehouse))
        # dbt's per-run artifacts go beside the warehouse, not into dbt_project/target.
        mp.setenv("DBT_TARGET_PATH", str(warehouse.parent / "dbt_target"))
        return dg.materialize([engage_dbt_assets], resources={"dbt": dbt_resource("local")}, raise_on_error=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A scale-0.002 warehouse with one unparseable delay and one order loaded twice, built by dbt."""
    warehouse = tmp_path_factory.mktemp("dbt") / "warehouse.duckdb"
    generate(warehouse, scale=0.002)
    with duckdb.connect(str(warehouse)) as con:
        # An order whose delay the tracking system exported as text that is not a number.
        con.execute(
            """INSERT INTO raw.order_tracking BY NAME
               SELECT * REPLACE (?::VARCHAR AS order_id, 'not-a-number' AS delay_days)
               FROM raw.order_tracking LIMIT 1""",
            [BAD_ORDER],
        )
        # The same order loaded again later with a corrected delay: the newest load must win.
        con.execute(
            """INSERT INTO raw.order_tracking BY NAME
               SELECT * REPLACE ('99' AS delay_days, loaded_at + INTERVAL 1 HOUR AS loaded_at)
               FROM raw.order_tracking WHERE order_id = ?""",
            [RELOADED_ORDER],
        )
    return warehouse, _build(warehouse)


def test_build_succeeds_with_translated_keys(built):
    _, result = built
    assert result.success
    materialized = {m.asset_key for m in result.get_asset_materialization_events()}
    assert materialized == set(engage_dbt_assets.keys)
    assert all(key.path[0] == "warehouse" for key in materialized)
    assert {mart_asset_key(name) for name in MARTS} <= materialized
    assert mart_names() == MARTS
    # Sources are upstream assets under "raw"; every model is in the "warehouse" group with dbt/duckdb kinds.
    deps = {dep for keys in engage_dbt_assets.asset_deps.values() for dep in keys}
    assert dg.AssetKey(["raw", "order_tracking"]) in deps
    spec = next(s for s in engage_dbt_assets.specs if s.key == mart_asset_key("order_tracking"))
    assert spec.group_name == "warehouse" and spec.kinds == {"dbt", "duckdb"}
    with pytest.raises(ValueError, match="not a dbt mart"):
        mart_asset_key("stg_order_tracking")


def test_marts_report_row_counts(built):
    warehouse, result = built
    counts = {
        e.asset_key: e.asset_observation_data.asset_observation.metadata["dagster/row_count"].value
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    }
    tables = {mart_asset_key(name) for name in MARTS - VIEW_MARTS}
    metrics = {dg.AssetKey(["warehouse", name]) for name in METRIC_TABLES}
    assert set(counts) == tables | metrics | {dg.AssetKey(["warehouse", "int_offer_history_deduplicated"])}
    # Every program has its lift row, with no data yet.
    assert counts[dg.AssetKey(["warehouse", "holdout_lift"])] == 4
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert counts[mart_asset_key("customers")] == con.execute("SELECT count(*) FROM marts.customers").fetchone()[0]


def test_dbt_tests_ran_as_passing_asset_checks(built):
    _, result = built
    evaluations = result.get_asset_check_evaluations()
    assert {e.asset_check_key for e in evaluations} == set(engage_dbt_assets.check_keys)
    assert len(evaluations) >= 20
    assert [e.asset_check_key.name for e in evaluations if not e.passed] == []
    checked = {e.asset_key for e in evaluations}
    assert mart_asset_key("order_tracking") in checked and mart_asset_key("customers") in checked


def test_marts_have_contracted_columns(built):
    warehouse, _ = built
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for mart in MARTS:
            rows = con.execute(
                """SELECT column_name, lower(data_type) FROM information_schema.columns
                   WHERE table_schema = 'marts' AND table_name = ? ORDER BY ordinal_position""",
                [mart],
            ).fetchall()
            assert dict(rows) == _contract(mart), mart
            assert con.execute(f"SELECT count(*) FROM marts.{mart}").fetchone()[0] > 0 or mart in (
                "contact_history",
                "conversions",
            ), mart
        # Schemas are exactly staging / intermediate / marts, not main_marts.
        schemas = {r[0] for r in con.execute("SELECT DISTINCT table_schema FROM information_schema.tables").fetchall()}
        assert {"raw", "staging", "intermediate", "marts"} <= schemas and "main_marts" not in schemas
        assert _contract("customers")["order_frequency"] == "integer"


def test_order_tracking_keeps_unparseable_delay_and_newest_load(built):
    warehouse, _ = built
    with duckdb.connect(str(warehouse), read_only=True) as con:
        bad = con.execute(
            "SELECT delay_days, delay_days_raw, order_value_usd FROM marts.order_tracking WHERE order_id = ?",
            [BAD_ORDER],
        ).fetchall()
        assert len(bad) == 1 and bad[0][0] is None and bad[0][1] == "not-a-number" and bad[0][2] is not None
        reloaded = con.execute(
            "SELECT delay_days FROM marts.order_tracking WHERE order_id = ?", [RELOADED_ORDER]
        ).fetchall()
        assert reloaded == [(99,)]
        raw_orders, mart_orders = con.execute(
            "SELECT (SELECT count(DISTINCT order_id) FROM raw.order_tracking),"
            " (SELECT count(*) FROM marts.order_tracking)"
        ).fetchone()
        assert raw_orders == mart_orders


def test_carts_mart_has_every_status_with_its_timestamps(built):
    warehouse, _ = built
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            """SELECT status, count(*),
                      count(*) FILTER (WHERE (purchased_at IS NOT NULL) = (status = 'purchased')
                                         AND (expired_at IS NOT NULL) = (status = 'expired')),
                      count(*) FILTER (WHERE cart_value = cart_value_usd AND cart_value_usd IS NOT NULL)
               FROM marts.carts GROUP BY status"""
        ).fetchall()
        assert {r[0] for r in rows} == {"abandoned", "purchased", "expired"}
        assert all(n == consistent == in_usd for _, n, consistent, in_usd in rows)
        # Every cart of the raw table is in the mart once; the latest day's carts are mostly still open.
        raw_carts, latest_open, latest = con.execute(
            """SELECT (SELECT count(DISTINCT cart_id) FROM raw.carts),
                      count(*) FILTER (WHERE status = 'abandoned'), count(*)
               FROM marts.carts WHERE abandoned_at >= (SELECT date_trunc('day', max(abandoned_at)) FROM marts.carts)"""
        ).fetchone()
        assert raw_carts == con.execute("SELECT count(*) FROM marts.carts").fetchone()[0]
        assert latest > 0 and latest_open / latest > 0.6
        in_stock = "SELECT bool_or(all_items_in_stock) AND NOT bool_and(all_items_in_stock) FROM marts.carts"
        assert con.execute(in_stock).fetchone()[0]  # some carts have an item out of stock, most do not


def test_training_cart_outcomes_train_a_purchase_intent_model(built):
    warehouse, _ = built
    with duckdb.connect(str(warehouse), read_only=True) as con:
        frame = con.execute(
            f"""SELECT {", ".join(PURCHASE_INTENT_FEATURES)}, CAST(purchased_within_7d AS INTEGER) AS label
                FROM marts.training_cart_outcomes ORDER BY cart_id"""
        ).df()
    labels = frame["label"].to_numpy()
    assert set(np.unique(labels)) == {0, 1}
    assert 0.05 < labels.mean() < 0.8
    features = frame[PURCHASE_INTENT_FEATURES].to_numpy(dtype=float)
    assert not np.isnan(features).any()
    half = len(frame) // 2
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(features[:half], labels[:half])
    auc = roc_auc_score(labels[half:], model.predict_proba(features[half:])[:, 1])
    assert auc > 0.65, auc


def test_contract_violation_fails_the_build_naming_the_column(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    generate(warehouse, scale=0.002)
    with duckdb.connect(str(warehouse)) as con:
        # The tracking export starts sending complaints as text: the order_tracking contract says integer.
        con.execute("ALTER TABLE raw.order_tracking ALTER customer_complaints TYPE VARCHAR")
    result = _build(warehouse)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    message = "\n".join(e.step_failure_data.error.to_string() for e in failures)
    assert "contract" in message and "customer_complaints" in message
    assert mart_asset_key("order_tracking") not in {m.asset_key for m in result.get_asset_materialization_events()}
