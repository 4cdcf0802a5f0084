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
from collections.abc import Mapping
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

from engage_assets.assets.keys import (  # the light location reads them too (see there); re-exported here
    WAREHOUSE_POOL,
    blocking_dbt_tests,
    dbt_asset_key,
    failed_dbt_tests,
    mart_asset_key,
    mart_names,
)
from resources.dbt import dbt_project, ensure_manifest

__all__ = [
    "WAREHOUSE_POOL",
    "EngageDbtTranslator",
    "blocking_dbt_tests",
    "build_dbt_assets",
    "failed_dbt_tests",
    "mart_asset_key",
    "mart_names",
    "raw_source_specs",
]

# One pool for every asset that writes the DuckDB warehouse (DuckDB allows one writing process per file).
MODEL_GROUP = "warehouse"
RAW_GROUP = "raw"
ASSET_KINDS = ("dbt", "duckdb")


class EngageDbtTranslator(DagsterDbtTranslator):
    """Engage's dbt policy: asset keys, group, kinds and asset checks, in one place."""

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return dbt_asset_key(dbt_resource_props["resource_type"], dbt_resource_props["name"])

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
