"""The event path's code location (`engage_assets.reactive_location`, `engage_events`): a decision run's process
imports neither dagster-dbt, nor sklearn, nor boto3, and decides there; the two locations split the deployment without
defining an asset twice, and their union is `build_definitions()`; the manifest-read dbt keys agree with
dagster-dbt's."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from engage_assets.assets.dbt import EngageDbtTranslator, build_dbt_assets
from engage_assets.assets.keys import MANIFEST_PATH, blocking_dbt_tests, mart_asset_key, mart_names
from engage_assets.domain.config import load_program
from engage_assets.domain.models import ModelRegistry
from engage_assets.reactive.training import train_purchase_intent
from engage_assets.settings import PROJECT_ROOT
from resources.dbt import dbt_project
from resources.event_batches import EventBatchStore
from resources.events.local import LocalEventQueue
from resources.store.sqlite import SqliteCandidateStore
from resources.warehouse.duckdb import DuckDBWarehouse
from sensors.cart_events import drain_events
from tests.test_cart_decision import CART_YAML, PID, model_root, people, warehouse  # noqa: F401 - fixtures
from tests.test_reactive_assets import OP, cart_body

HEAVY = ("dagster_dbt", "dbt", "sklearn", "scipy.stats", "boto3", "botocore")


def run_python(code: str, env: dict[str, str]) -> dict[str, Any]:
    """Run `code` in a fresh interpreter with `env`; its last stdout line, read as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture
def home(tmp_path, warehouse, monkeypatch) -> dict[str, str]:  # noqa: F811
    """An ENGAGE_HOME with the cart program alone (hours from 2020), its model trained and promoted, the warehouse."""
    configs = tmp_path / "programs"
    configs.mkdir()
    raw = yaml.safe_load(CART_YAML.read_text())
    raw["partitionsStart"] = "2020-01-01"
    (configs / "abandoned-cart-recovery.yaml").write_text(yaml.safe_dump(raw))
    env = {
        "ENGAGE_HOME": str(tmp_path / "home"),
        "ENGAGE_WAREHOUSE_PATH": str(warehouse),
        "ENGAGE_PROGRAM_CONFIGS": str(configs),
        "ENGAGE_ENV": "local",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    program = load_program(configs / "abandoned-cart-recovery.yaml")
    train_purchase_intent(program, DuckDBWarehouse(path=str(warehouse)), ModelRegistry(tmp_path / "home" / "models"))
    return env


def test_the_decide_job_runs_in_a_process_without_dbt_sklearn_or_boto3(home, people, tmp_path):  # noqa: F811
    from engage_assets.settings import get_settings

    settings = get_settings()
    program = load_program(Path(home["ENGAGE_PROGRAM_CONFIGS"]) / "abandoned-cart-recovery.yaml")
    at = min(people["now"], datetime.now(UTC)).replace(minute=5, second=0, microsecond=0) - timedelta(hours=1)
    queue = LocalEventQueue(path=str(settings.events_path), visibility_timeout_s=0)
    queue.send([cart_body(c, f"cart-{c}", at + timedelta(minutes=i)) for i, c in enumerate(people["good"][:3])])
    (batch,) = drain_events(program, queue, EventBatchStore(root=str(settings.event_batch_root))).batches
    as_of = max(people["now"], datetime.now(UTC)).isoformat()
    out = run_python(
        f"""
        import json, sys
        import dagster as dg
        from engage_assets.reactive_location import load_event_definitions
        defs = load_event_definitions()
        loaded = [m for m in {HEAVY!r} if m in sys.modules]
        job = defs.resolve_job_def("abandoned_cart_recovery_decide")
        config = {{"ops": {{{OP!r}: {{"config": {{"batch_ids": [{batch.batch_id!r}], "as_of": {as_of!r}}}}}}}}}
        with dg.instance_for_test() as instance:
            result = job.execute_in_process(partition_key={batch.partition!r}, run_config=config, instance=instance)
        ran = [m for m in {HEAVY!r} if m in sys.modules]
        print(json.dumps({{"success": result.success, "loaded": loaded, "ran": ran}}))
        """,
        home,
    )
    assert out == {"success": True, "loaded": [], "ran": []}
    assert SqliteCandidateStore(path=str(settings.store_path)).count(PID) > 0  # decided there, served from the store


def test_the_light_location_loads_no_heavy_module_in_production_either(tmp_path):
    from engage_assets.settings import PROD_REQUIRED

    env = {
        "ENGAGE_ENV": "prod",
        "ENGAGE_HOME": str(tmp_path),
        "ENGAGE_REACTIVE_TABLE": "engage-reactive",
        "ENGAGE_CART_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/carts",
        "ENGAGE_CART_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/carts-dlq",
    }
    env.update({var: "us-east-1" if name == "aws_region" else f"name-{name}" for name, var in PROD_REQUIRED.items()})
    out = run_python(
        f"""
        import json, sys
        from engage_assets.reactive_location import load_event_definitions
        defs = load_event_definitions()
        resources = sorted(type(r).__name__ for r in defs.resources.values())
        print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules], "resources": resources}}))
        """,
        env,
    )
    # Production selects the AWS classes (so boto3 loads with them); never dbt or sklearn.
    assert "boto3" in out["loaded"] and not {"dagster_dbt", "dbt", "sklearn"} & set(out["loaded"])
    assert {"DynamoDbDedupStore", "SqsEventSource", "SageMakerScoringResource"} <= set(out["resources"])


def defined_keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    """The asset keys a Definitions object defines itself (not the ones it only depends on)."""
    out: set[dg.AssetKey] = set()
    for a in defs.assets or []:
        out |= set(a.keys) if isinstance(a, dg.AssetsDefinition) else {a.key}
    return out


def test_the_two_locations_split_the_deployment_and_their_union_is_build_definitions(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    from engage_assets.definitions import build_definitions, build_main_definitions
    from engage_assets.reactive_location import build_event_definitions

    main, events, union = build_main_definitions(), build_event_definitions(), build_definitions()
    main_keys, event_keys = defined_keys(main), defined_keys(events)
    stages = {"source_candidates", "eligible_candidates", "scored_candidates", "offers", "stored_candidates"}
    assert {k.path[-1] for k in event_keys} == stages | {"touch_plan"}
    assert not main_keys & event_keys and defined_keys(union) == main_keys | event_keys
    main_jobs, event_jobs = {j.name for j in main.jobs or []}, {j.name for j in events.jobs or []}
    assert event_jobs == {"abandoned_cart_recovery_decide"} and not main_jobs & event_jobs
    assert {j.name for j in union.get_repository_def().get_all_jobs()} >= main_jobs | event_jobs
    event_sensors = {s.name for s in events.sensors or []}
    assert event_sensors == {"abandoned_cart_recovery_cart_events"}
    assert not event_sensors & {s.name for s in main.sensors or []}
    # Lineage across the locations, by key: each one's upstream of the other is defined there.
    graph = union.get_repository_def().asset_graph
    touch_plan = dg.AssetKey(["abandoned_cart_recovery", "touch_plan"])
    deliveries = dg.AssetKey(["abandoned_cart_recovery", "deliveries"])
    model = dg.AssetKey(["abandoned_cart_recovery", "purchase_intent_v4_model"])
    assert deliveries in main_keys and touch_plan in graph.get(deliveries).parent_keys
    assert (
        model in main_keys
        and model in graph.get(dg.AssetKey(["abandoned_cart_recovery", "scored_candidates"])).parent_keys
    )
    event_graph = events.get_repository_def().asset_graph
    assert {k for k in event_graph.get_all_asset_keys() if k not in event_keys} <= main_keys  # marts and the model


def graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read())["data"])


LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename } } } } }"
EDGES = """{ assetNodes(assetKeys: [{path: ["abandoned_cart_recovery", "deliveries"]},
                                 {path: ["abandoned_cart_recovery", "scored_candidates"]}]) {
    assetKey { path } repository { location { name } } dependencyKeys { path } } }"""


def test_the_workspace_loads_both_locations_and_the_ui_shows_lineage_across_them(tmp_path):
    """`dagster-webserver -w workspace.yaml` (what `make dev` runs): both locations load, and its GraphQL API (the
    UI's) gives the edges that cross them: touch_plan (engage_events) → deliveries (engage), the model (engage) →
    scored_candidates (engage_events)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1"]
        + ["-p", str(port)],
        env={**os.environ, "DAGSTER_HOME": str(tmp_path), "ENGAGE_HOME": str(tmp_path / "home")},
        cwd=PROJECT_ROOT,
        stdout=(tmp_path / "web.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and web.poll() is None:
            with contextlib.suppress(OSError, KeyError, ValueError):
                entries = graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
                if len(entries) == 2 and all(e["loadStatus"] == "LOADED" for e in entries):
                    break
            time.sleep(1)
        loaded = {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries}
        log = (tmp_path / "web.log").read_text(errors="replace")[-3000:]
        assert loaded == {"engage": "RepositoryLocation", "engage_events": "RepositoryLocation"}, log
        nodes = {
            "/".join(n["assetKey"]["path"]): (
                n["repository"]["location"]["name"],
                {"/".join(k["path"]) for k in n["dependencyKeys"]},
            )
            for n in graphql(port, EDGES)["assetNodes"]
        }
        group = "abandoned_cart_recovery"
        assert nodes[f"{group}/deliveries"] == ("engage", {f"{group}/touch_plan"})
        location, deps = nodes[f"{group}/scored_candidates"]
        assert location == "engage_events" and f"{group}/purchase_intent_v4_model" in deps
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=60)


def test_the_manifest_read_keys_are_dagster_dbts():
    assert MANIFEST_PATH == Path(dbt_project.manifest_path)
    translator = EngageDbtTranslator()
    for name in mart_names():
        assert mart_asset_key(name) == translator.get_asset_key({"resource_type": "model", "name": name})
    with pytest.raises(ValueError, match="not a dbt mart"):
        mart_asset_key("no_such_mart")
    expected: dict[dg.AssetKey, set[dg.AssetCheckKey]] = {}
    for spec in build_dbt_assets().check_specs:
        if spec.blocking:
            expected.setdefault(spec.asset_key, set()).add(spec.key)
    assert {k: set(v) for k, v in blocking_dbt_tests().items()} == expected
    assert expected[mart_asset_key("carts")]  # the cart marts the decision reads are guarded
