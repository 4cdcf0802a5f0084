"""The asset keys and the dbt-test guard that both code locations share, readable without dagster-dbt.

The event path's code location (`engage_assets.reactive_location`) starts a process for every decision run: it names
the marts it reads (`mart_asset_key`) and refuses to run on a mart whose blocking dbt test failed
(`refuse_failed_marts`), like the batch programs.  Importing dagster-dbt (dbt-core, agate, mashumaro...) costs ~1 s
of that start, so what these need is read from dbt's `manifest.json` directly: the mart names, and the blocking
tests of each model as dagster-dbt makes them asset checks (`engage_assets.assets.dbt`'s translator; a test checks
that both agree on every model of the project).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg

from engage_assets.domain.config import ProgramBase
from engage_assets.settings import PROJECT_ROOT

WAREHOUSE_POOL = "duckdb_warehouse"
# dbt parses into dbt_project/target (`resources.dbt.prepare_manifest`, which `dbt_project.manifest_path` names).
MANIFEST_PATH = PROJECT_ROOT / "dbt_project" / "target" / "manifest.json"
FAILED_ROWS = "dagster_dbt/failed_row_count"
COMPLETED = ("SUCCEEDED", "FAILED")  # an execution record's status once its test ran (not merely planned)


def model_asset_name(model_id: str) -> str:
    """The asset name of a model, e.g. `churn-risk-v6` → `churn_risk_v6_model`."""
    return model_id.replace("-", "_").replace(".", "_") + "_model"


def dbt_asset_key(resource_type: str, name: str) -> dg.AssetKey:
    """The asset key of a dbt node: `["raw", <table>]` for a source, `["warehouse", <model>]` for anything else."""
    return dg.AssetKey(["raw" if resource_type == "source" else "warehouse", name])


@cache
def dbt_manifest() -> Mapping[str, Any]:
    """The parsed `manifest.json`; dbt parses it first when it is missing (a fresh clone).  The main location keeps
    it current (`resources.dbt.ensure_manifest`: re-parsed under `dagster dev`, when a model changed)."""
    path = MANIFEST_PATH
    if not path.exists():
        from resources.dbt import ensure_manifest  # dagster-dbt, only to build a missing manifest

        path = ensure_manifest()
    manifest: Mapping[str, Any] = json.loads(Path(path).read_text())
    return manifest


@cache
def mart_names() -> frozenset[str]:
    """Names of the models under dbt_project/models/marts (the tables the programs read)."""
    return frozenset(
        node["name"]
        for node in dbt_manifest()["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1:2] == ["marts"]
    )


def mart_asset_key(name: str) -> dg.AssetKey:
    """The asset key of a mart, for assets that read it: `mart_asset_key("order_tracking")`.

    Raises ValueError for a name that is not a mart, so a typo fails at definitions load, not at run time.
    """
    if name not in mart_names():
        raise ValueError(f"{name!r} is not a dbt mart; marts are: {', '.join(sorted(mart_names()))}")
    return dbt_asset_key("model", name)


def _tested_node(manifest: Mapping[str, Any], test: Mapping[str, Any]) -> str | None:
    """The unique id of the node a test checks, as dagster-dbt attaches it: the node its `meta.dagster.ref` names,
    else the only node it depends on, else the generic test's `attached_node`."""
    ref = ((test.get("config") or {}).get("meta") or test.get("meta") or {}).get("dagster", {}).get("ref")
    if ref:
        wanted = (ref["name"], ref.get("package") or manifest["metadata"]["project_name"], ref.get("version"))
        return next(
            (uid for uid, n in manifest["nodes"].items() if (n["name"], n["package_name"], n.get("version")) == wanted),
            None,
        )
    upstream = test["depends_on"]["nodes"]
    if len(upstream) == 1:
        return str(upstream[0])
    attached = test.get("attached_node")
    return str(attached) if attached else None


@cache
def blocking_dbt_tests() -> dict[dg.AssetKey, tuple[dg.AssetCheckKey, ...]]:
    """{model's asset key: its blocking dbt tests}: dagster-dbt makes a test of severity `error` on a model (a seed,
    a snapshot: the nodes it makes assets) a blocking asset check, so in a run that builds the warehouse a failing
    one stops every asset downstream of its model."""
    manifest = dbt_manifest()
    nodes = manifest["nodes"]
    out: dict[dg.AssetKey, list[dg.AssetCheckKey]] = {}
    for test in nodes.values():
        if (
            test["resource_type"] != "test"
            or ((test.get("config") or {}).get("severity") or "error").lower() != "error"
        ):
            continue
        target = nodes.get(_tested_node(manifest, test) or "")
        if target is not None and target["resource_type"] != "test":
            key = dbt_asset_key(target["resource_type"], target["name"])
            out.setdefault(key, []).append(dg.AssetCheckKey(key, test["name"]))
    return {key: tuple(sorted(checks, key=lambda c: c.name)) for key, checks in out.items()}


def failed_dbt_tests(instance: dg.DagsterInstance, models: Iterable[dg.AssetKey]) -> list[str]:
    """The blocking dbt tests of `models` whose latest result (any run, as the instance recorded it) is a failure of
    severity ERROR, each as `warehouse/<model>: <test> (N failing rows)`.  What the blocking checks do inside one run,
    this does across runs: an asset that reads a mart can refuse to run on it after a `dbt build` whose tests failed,
    however it was launched (`dagster asset materialize`, a schedule, a backfill)."""
    failed = []
    storage = instance.event_log_storage
    for key in (k for model in models for k in blocking_dbt_tests().get(model, ())):
        # The newest execution that ran (a run that skipped the test leaves a planned record, which says nothing).
        history = storage.get_asset_check_execution_history(key, limit=20)
        ran = next((r for r in history if r.status.value in COMPLETED), None)
        evaluation = ran.evaluation if ran is not None else None
        if evaluation is None or evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        rows = evaluation.metadata.get(FAILED_ROWS)
        count = f" ({getattr(rows, 'value', rows)} failing rows)" if rows is not None else ""
        failed.append(f"{key.asset_key.to_user_string()}: {key.name}{count}")
    return failed


def refuse_failed_marts(context: dg.AssetExecutionContext, program: ProgramBase, marts: list[dg.AssetKey]) -> None:
    """Fail before reading anything when a blocking dbt test on a mart the program reads failed in the latest build
    (in any run: a `dagster asset materialize` of the program alone too), naming each test."""
    failed = failed_dbt_tests(context.instance, marts)
    if failed:
        raise dg.Failure(
            description=f"{program.programId}: not run, the warehouse's dbt tests failed on the marts it reads: "
            + "; ".join(failed)
            + ". Fix the data (or the test) and build the warehouse again (job warehouse_build, or `engage run`).",
            metadata={"failed_dbt_tests": dg.MetadataValue.json(failed)},
        )
