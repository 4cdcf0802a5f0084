"""The dbt project as Dagster assets: one translator holds every dbt policy (keys, groups, kinds, checks).

Asset keys: `["warehouse", <model>]` for dbt models (staging and intermediate views, marts), `["raw", <table>]`
for the dbt sources (the raw tables the generator or the loaders write). dbt tests become asset checks on the
model they test. The keys never depend on the environment: the manifest is always parsed with the `local`
target (no credentials needed), and the runtime target (`local` DuckDB or `prod` Snowflake) is only a
property of the `dbt` resource.

On a fresh clone the manifest is built by `python -m resources.dbt` (`make setup` runs it); building the definitions
also builds it when it is missing, and `dagster dev` re-parses on every load.  Importing this module never runs dbt.
"""

import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliInvocation,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from resources.dbt import dbt_project, ensure_manifest

# One pool for every asset that writes the DuckDB warehouse (DuckDB allows one writing process per file).
WAREHOUSE_POOL = "duckdb_warehouse"
MODEL_GROUP = "warehouse"
RAW_GROUP = "raw"
ASSET_KINDS = ("dbt", "duckdb")


class EngageDbtTranslator(DagsterDbtTranslator):
    """Engage's dbt policy: asset keys, group, kinds and asset checks, in one place."""

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(["raw", dbt_resource_props["name"]])
        return dg.AssetKey(["warehouse", dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        # Sources are other code's assets (the raw loaders): they keep whatever group those give them.
        if dbt_resource_props["resource_type"] == "source":
            return None
        return MODEL_GROUP

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        # A label for the UI, like the keys independent of the target a run uses.
        return spec.replace_attributes(kinds=set(ASSET_KINDS))


@cache
def build_dbt_assets() -> dg.AssetsDefinition:
    """The dbt models as one multi-asset, from the manifest (parsed here when missing, never at import)."""

    @dbt_assets(
        manifest=ensure_manifest(),
        project=dbt_project,
        dagster_dbt_translator=EngageDbtTranslator(),
        pool=WAREHOUSE_POOL,
    )
    def engage_dbt_assets(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        yield from _dbt_build(context, dbt)

    return engage_dbt_assets


def _dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Build the warehouse with `dbt build`: staging and intermediate views, then the marts the programs read.

    Each model's dbt tests run right after it and are reported as asset checks; a failing test skips the
    models downstream of it, so a broken mart never feeds a program. Tables get `dagster/row_count`.
    """
    invocation = dbt.cli(["build"], context=context)
    if dbt.target == "prod":
        # Snowflake serves reads while dbt writes: count each table as it lands.
        yield from invocation.stream().fetch_row_counts()
        return
    yield from invocation.stream()
    # DuckDB: the dbt process held the file's only lock until it exited, so tables are counted afterwards.
    yield from _duckdb_row_counts(context, invocation)


def _duckdb_row_counts(context: dg.AssetExecutionContext, invocation: DbtCliInvocation):
    """One observation with `dagster/row_count` per table model that dbt built, read from the DuckDB file."""
    adapter = invocation.adapter
    path = getattr(getattr(getattr(adapter, "config", None), "credentials", None), "path", None)
    if not path or not Path(path).exists():
        context.log.warning("DuckDB warehouse file unknown; row counts are not recorded.")
        return
    built = [
        invocation.manifest["nodes"][result["unique_id"]]
        for result in invocation.get_artifact("run_results.json")["results"]
        if result["unique_id"].startswith("model.") and result["status"] == "success"
    ]
    tables = [node for node in built if node["config"]["materialized"] == "table"]
    if not tables:
        return
    translator = EngageDbtTranslator()
    query = " UNION ALL ".join(
        f'SELECT {i} AS i, count(*) AS n FROM "{node["schema"]}"."{node["alias"]}"' for i, node in enumerate(tables)
    )
    try:
        with duckdb.connect(path, read_only=True) as con:
            counts = dict(con.execute(query).fetchall())
    except duckdb.Error as error:  # e.g. another process took the file's lock: the build itself succeeded
        context.log.warning(f"Row counts not recorded: {error}")
        return
    for i, node in enumerate(tables):
        yield dg.AssetObservation(
            asset_key=translator.get_asset_key(node),
            metadata={"dagster/row_count": dg.MetadataValue.int(counts[i])},
        )


def raw_source_specs() -> list[dg.AssetSpec]:
    """The dbt sources as Dagster assets of group `raw`, so the lineage starts at the tables a loader (here the
    generator, in production the ingestion jobs) writes. External: Dagster observes, never materializes them."""
    manifest = json.loads(ensure_manifest().read_text())
    translator = EngageDbtTranslator()
    specs = []
    for source in sorted(manifest["sources"].values(), key=lambda s: s["name"]):
        freshness = source.get("freshness") or {}
        specs.append(
            dg.AssetSpec(
                key=translator.get_asset_key(source),
                group_name=RAW_GROUP,
                description=source.get("description") or f"raw table {source['schema']}.{source['identifier']}",
                kinds={"duckdb"},
                metadata={
                    "dagster/table_name": f"{source['schema']}.{source['identifier']}",
                    "loaded_at_field": source.get("loaded_at_field") or "",
                    "dbt_freshness": json.dumps({k: v for k, v in freshness.items() if v}, sort_keys=True),
                },
            )
        )
    return specs


@cache
def mart_names() -> frozenset[str]:
    """Names of the models under dbt_project/models/marts (the tables the programs read)."""
    manifest = json.loads(ensure_manifest().read_text())
    return frozenset(
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1:2] == ["marts"]
    )


def mart_asset_key(name: str) -> dg.AssetKey:
    """The asset key of a mart, for assets that read it: `mart_asset_key("order_tracking")`.

    Raises ValueError for a name that is not a mart, so a typo fails at definitions load, not at run time.
    """
    if name not in mart_names():
        raise ValueError(f"{name!r} is not a dbt mart; marts are: {', '.join(sorted(mart_names()))}")
    return EngageDbtTranslator().get_asset_key({"resource_type": "model", "name": name})


@cache
def blocking_dbt_tests() -> dict[dg.AssetKey, tuple[dg.AssetCheckKey, ...]]:
    """{model's asset key: its blocking dbt tests}: dagster-dbt makes a test of severity `error` a blocking asset
    check, so in a run that builds the warehouse a failing one stops every asset downstream of its model."""
    out: dict[dg.AssetKey, list[dg.AssetCheckKey]] = {}
    for spec in build_dbt_assets().check_specs:
        if spec.blocking:
            out.setdefault(spec.asset_key, []).append(spec.key)
    return {key: tuple(checks) for key, checks in out.items()}


FAILED_ROWS = "dagster_dbt/failed_row_count"
COMPLETED = ("SUCCEEDED", "FAILED")  # an execution record's status once its test ran (not merely planned)


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
