"""`engage run`'s last step: the metric models rebuilt over the responses just recorded, the daily metrics of the
days that have figures, every program's report and the dashboard; then the report files' paths."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dagster as dg

from engage_assets.settings import Settings

# The reports' assets are imported when used: `engage generate` and the other commands start without them.
GROUP, METRICS_JOB, REPORTS_JOB = "reports", "metrics_aggregation", "engage_reports"

LAST_DAYS = 14  # the daily metrics asset is materialized for at most the last 14 days with figures


def metric_models(defs: dg.Definitions, warehouse_job: str) -> list[dg.AssetKey]:
    """The dbt models only the reports read (the metric models and what only they are built from)."""
    graph = defs.resolve_asset_graph()
    reports = dg.AssetSelection.groups(GROUP)
    dbt = set(defs.resolve_job_def(warehouse_job).asset_layer.selected_asset_keys)
    readers = dg.AssetSelection.assets(*(k for k in graph.get_all_asset_keys() if k not in dbt)) - reports
    read_by_reports = reports.upstream().resolve(graph) - readers.upstream().resolve(graph)
    return sorted(k for k in dbt if k in read_by_reports)


def days_with_figures(defs: dg.Definitions) -> tuple[list[str], int]:
    """The daily partitions, among the last, that have a row in program_daily_metrics; and how many days with
    figures are not partitions yet (after today: the simulated responses' future)."""
    from engage_assets.assets.reports import read_tables

    with dg.build_resources({"warehouse": (defs.resources or {})["warehouse"]}) as resources:
        daily = read_tables(resources.warehouse).daily
    keys = set(defs.resolve_job_def(METRICS_JOB).partitions_def.get_partition_keys())  # type: ignore[union-attr]
    dated = {d.isoformat() for d in daily.column("metric_date").to_pylist()}
    last = max(keys, default="")
    return sorted(dated & keys)[-LAST_DAYS:], len({d for d in dated if d > last})


def paths_of(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """{asset key: its report file} of a run."""
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        if "path" in mat.metadata:
            out[mat.asset_key.to_user_string()] = str(mat.metadata["path"].value)
    return out


def run_reports(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    warehouse_job: str,
    execute: Callable[..., Any],
) -> bool:
    """Rebuild the metric models, materialize the daily metrics and the reports, print the files; whether it all
    succeeded.  `execute` runs a job quietly (the CLI's)."""
    print("\nReports (metric models rebuilt over the recorded responses, then the daily metrics and the reports) ...")
    t0 = time.perf_counter()
    models = metric_models(defs, warehouse_job)
    dbt_log = settings.home / "dbt_metrics.log"
    if models and not execute(defs.resolve_job_def(warehouse_job), instance, dbt_log, asset_selection=models).success:
        print(f"   the metric models failed to build: see {dbt_log} and the run in the Dagster UI (make dev)")
        return False
    paths: dict[str, str] = {}
    days, later = days_with_figures(defs)
    for day in days:
        result = execute(defs.resolve_job_def(METRICS_JOB), instance, partition_key=day)
        paths.update({f"daily metrics {day}": p for p in paths_of(result).values()})
    result = execute(defs.resolve_job_def(REPORTS_JOB), instance)
    paths.update(paths_of(result))
    width = max((len(k) for k in paths), default=0)
    for name, path in sorted(paths.items(), key=lambda kv: (not kv[0].endswith("dashboard"), kv[0])):
        print(f"   {name:<{width}}  {path}")
    if later:
        print(f"   {later} later days have figures (the simulated future): their daily metrics run on their day, 23:59")
    print(f"   the same reports, with their charts, in the Dagster UI: asset group `{GROUP}` (make dev)")
    print(f"   done in {time.perf_counter() - t0:.1f} s")
    return bool(result.success)
