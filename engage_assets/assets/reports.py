"""Reports people look at (#11, item 6) and the spec's analysis and report jobs (item 8).

- `reports/daily_metrics` (daily partitions, the spec's 23:59 "Metrics Aggregation" of every program): the day's
  figures from `metrics.program_daily_metrics` as numeric metadata (the UI plots them over partitions), published
  (CloudWatch in production, a SQLite log locally) and written as the day's report.
- `reports/<program group>`: the program's report (spec metrics, lift, funnel, attribution, daily figures and the
  charts: funnel, segments, channels, lift with its 95 % interval, ROI over time), run at the program's analysis /
  report times of the spec (`REPORT_CRONS`).
- `reports/dashboard`: every program side by side, rebuilt with each program's report.

Each writes an HTML file under ENGAGE_HOME/reports and the same report as Markdown metadata (charts as PNG images).
A report with no data says so.  They read the metric models as the warehouse build last left them (the 01:30 build,
after the 00:30 outcome export; `engage run` rebuilds them before its reports): the 23:59 aggregation therefore
also re-runs the day before, complete by then.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from engage_assets.assets.dbt import WAREHOUSE_POOL
from engage_assets.domain.config import ProgramBase
from engage_assets.domain.reports.build import daily_report, dashboard, program_report
from engage_assets.domain.reports.data import DAILY_COUNTS, DAILY_FIGURES, SCHEMAS, MetricTables, read_metric_tables
from engage_assets.domain.reports.render import Report, Section, Table, to_html, to_markdown
from resources.metrics_publisher.base import DailyMetric, MetricsPublisher
from resources.metrics_publisher.cloudwatch import StaleMetricsError
from resources.report_files import ReportFolder
from resources.warehouse.base import WarehouseResource

GROUP = "reports"
DAILY_METRICS_KEY = dg.AssetKey([GROUP, "daily_metrics"])
DASHBOARD_KEY = dg.AssetKey([GROUP, "dashboard"])
METRICS_JOB = "metrics_aggregation"
REPORTS_JOB = "engage_reports"
# The spec's Scheduled Jobs: each program's analysis and report runs (UTC).  A program the spec does not name
# reports at 06:00, the executive reports' hour.
REPORT_CRONS: dict[str, tuple[str, ...]] = {
    "proactive-refunds": ("0 18 * * *",),  # 6:00 PM Satisfaction Recovery Analysis
    "churn-prevention": ("0 6 * * *",),  # 6:00 AM Retention Metrics Dashboard
    "win-back-campaigns": ("0 6 * * *",),  # 6:00 AM Win-Back Metrics Dashboard
    "abandoned-cart-recovery": ("0 3 * * *", "0 6 * * *"),  # 3:00 AM Recovery Performance, 6:00 AM Revenue Impact
}
DEFAULT_CRONS = ("0 6 * * *",)


def report_key(program: ProgramBase) -> dg.AssetKey:
    """`reports/<group>`: the program's report."""
    return dg.AssetKey([GROUP, program.group])


def report_file(program: ProgramBase) -> str:
    """The program's report file, relative to the reports folder."""
    return f"{program.group}/report.html"


def as_of() -> str:
    """The report's time stamp."""
    return "built " + datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def read_tables(warehouse: WarehouseResource) -> MetricTables:
    """The metric models, one warehouse round."""
    return read_metric_tables(warehouse.query_arrow_many)


def report_metadata(report: Report, path: Any, tables: MetricTables) -> dict[str, Any]:
    """A report's metadata: the Markdown (tables and charts), the HTML file, what it was built from."""
    return {
        "report": dg.MetadataValue.md(to_markdown(report)),
        "path": dg.MetadataValue.path(str(path)),
        "charts": sum(1 for s in report.sections if s.png is not None),
        "missing_metric_models": ", ".join(tables.missing) or "none",
    }


def metric_deps(dbt_keys: Collection[dg.AssetKey]) -> list[dg.AssetKey]:
    """The dbt metric models the reports read, those the project has (`warehouse/<model>`)."""
    return [k for name in SCHEMAS if (k := dg.AssetKey(["warehouse", name])) in dbt_keys]


@dataclass
class BuiltReports:
    """The reports' assets, jobs and schedules."""

    assets: list[dg.AssetsDefinition] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)
    schedules: list[Any] = field(default_factory=list)


def build_program_report(program: ProgramBase, deps: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """The program's report asset."""

    @dg.asset(
        key=report_key(program),
        group_name=GROUP,
        deps=list(deps),
        pool=WAREHOUSE_POOL,
        kinds={"html"},
        tags={"engage/program": program.programId},
        description=f"{program.programName}: the report (spec metrics, lift, funnel, charts) as HTML and metadata.",
    )
    def program_report_asset(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, report_files: ReportFolder
    ) -> dg.MaterializeResult:
        """Reads the metric models and writes the program's report (no data yet: a report that says so)."""
        tables = read_tables(warehouse)
        report = program_report(program.programId, program.programName, tables, as_of())
        path = report_files.write(report_file(program), to_html(report))
        context.log.info(f"{program.programName}: report written to {path}")
        return dg.MaterializeResult(metadata=report_metadata(report, path, tables))

    return program_report_asset


def build_dashboard(programs: Sequence[ProgramBase], deps: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """The dashboard asset over every program."""
    names = {p.programId: p.programName for p in programs}

    @dg.asset(
        key=DASHBOARD_KEY,
        group_name=GROUP,
        deps=list(deps),
        pool=WAREHOUSE_POOL,
        kinds={"html"},
        description="Every program side by side (lift, spec metrics, funnel, segments, channels, ROI over time).",
    )
    def dashboard_asset(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, report_files: ReportFolder
    ) -> dg.MaterializeResult:
        """Reads the metric models and writes the dashboard, with links to each program's report."""
        tables = read_tables(warehouse)
        report = dashboard(names, tables, as_of())
        links = Table(["Program", "Report file"], [[p.programName, report_file(p)] for p in programs])
        report = Report(report.title, report.subtitle, [*report.sections, Section("Program reports", table=links)])
        path = report_files.write("dashboard.html", to_html(report))
        context.log.info(f"dashboard written to {path}")
        return dg.MaterializeResult(metadata=report_metadata(report, path, tables))

    return dashboard_asset


def daily_partitions(programs: Sequence[ProgramBase]) -> dg.DailyPartitionsDefinition:
    """One partition a day from the first program's first partition; today's is there already (`end_offset=1`):
    the 23:59 aggregation runs the day that is ending."""
    start = min((p.partitionsStart for p in programs if hasattr(p, "partitionsStart")), default=date(2026, 1, 1))
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_offset=1, timezone="UTC")


# The figures' names in the metadata and CloudWatch: the model's columns, ROI named with its unit.
FIGURE_NAMES = {c: c for c in DAILY_FIGURES} | {"roi": "roi_percent"}


def daily_values(day_rows: list[dict[str, Any]], program_id: str, modelled: bool) -> dict[str, float]:
    """The program's figures of the day: its row's (ROI in percent, absent on a day without cost); no row but the
    model built: zero counts and dollars."""
    row = next((r for r in day_rows if r["program_id"] == program_id), None)
    if row is None:
        return dict.fromkeys([*DAILY_COUNTS, "cost_usd", "revenue_usd"], 0.0) if modelled else {}
    return {FIGURE_NAMES[c]: float(row[c]) for c in DAILY_FIGURES if row[c] is not None}


def publish(publisher: MetricsPublisher, metrics: list[DailyMetric], log: Any) -> str:
    """Publish the day's metrics; what happened, for the metadata (an over-age day is skipped, not failed)."""
    try:
        n = publisher.publish(metrics)
    except StaleMetricsError as e:
        log.warning(str(e))
        return f"not published: {e}"
    return f"{n} metrics to {publisher.destination}"


def build_daily_metrics(
    programs: Sequence[ProgramBase], parts: dg.DailyPartitionsDefinition, deps: Sequence[dg.AssetKey]
) -> dg.AssetsDefinition:
    """The daily metrics asset."""
    names = {p.programId: p.programName for p in programs}

    @dg.asset(
        key=DAILY_METRICS_KEY,
        group_name=GROUP,
        deps=list(deps),
        partitions_def=parts,
        pool=WAREHOUSE_POOL,
        kinds={"html"},
        description="The day's figures of every program (program_daily_metrics): metadata plotted over partitions, "
        "published (CloudWatch in production) and written as the day's report.",
    )
    def daily_metrics_asset(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        report_files: ReportFolder,
        metrics_publisher: MetricsPublisher,
    ) -> dg.MaterializeResult:
        """Aggregates the partition's day: `<group>.<figure>` metadata per program, published, and a report."""
        day = date.fromisoformat(context.partition_key)
        tables = read_tables(warehouse)
        modelled = "program_daily_metrics" not in tables.missing
        day_rows = tables.on_day(day).to_pylist()
        metadata: dict[str, Any] = {}
        metrics: list[DailyMetric] = []
        for p in programs:
            for figure, v in daily_values(day_rows, p.programId, modelled).items():
                metadata[f"{p.group}.{figure}"] = int(v) if figure in DAILY_COUNTS else v
                metrics.append(DailyMetric(day, p.programId, figure, v))
        report = daily_report(day, names, tables, as_of())
        path = report_files.write(f"daily/{day.isoformat()}.html", to_html(report))
        published = publish(metrics_publisher, metrics, context.log) if metrics else "nothing to publish"
        metadata.update(report_metadata(report, path, tables))
        metadata["published"] = published
        return dg.MaterializeResult(metadata=metadata)

    return daily_metrics_asset


def aggregation_schedule(job: Any, parts: dg.DailyPartitionsDefinition) -> dg.ScheduleDefinition:
    """The spec's 11:59 PM Metrics Aggregation: the day that is ending, as the warehouse holds it then, and the day
    before again, now complete (its outcomes are exported at 00:30 and the warehouse built at 01:30 of the next
    day).  Each run replaces its partition's figures."""

    @dg.schedule(
        name=f"{METRICS_JOB}_schedule",
        job=job,
        cron_schedule="59 23 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def metrics_aggregation_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        """Today's and yesterday's partitions."""
        now = context.scheduled_execution_time or datetime.now(UTC)
        keys = parts.get_partition_keys(current_time=now)[-2:]
        return [dg.RunRequest(run_key=f"{key}@{now:%Y-%m-%d}", partition_key=key) for key in keys]

    return metrics_aggregation_schedule


def build_reports(programs: Sequence[ProgramBase], dbt_keys: Collection[dg.AssetKey]) -> BuiltReports:
    """The reports of these programs: the assets, the 23:59 metrics aggregation, each program's report job on its
    spec times (running by default for an enabled program), and `engage_reports` (every report, unscheduled: what
    `engage run` materializes)."""
    built = BuiltReports()
    if not programs:
        return built
    deps = metric_deps(dbt_keys)
    parts = daily_partitions(programs)
    built.assets.append(build_daily_metrics(programs, parts, deps))
    built.assets += [build_program_report(p, deps) for p in programs]
    built.assets.append(build_dashboard(programs, deps))
    running = dg.DefaultScheduleStatus.RUNNING
    metrics_job = dg.define_asset_job(
        METRICS_JOB,
        selection=dg.AssetSelection.assets(DAILY_METRICS_KEY),
        partitions_def=parts,
        description="Spec 11:59 PM Metrics Aggregation: aggregate the day's metrics, publish them, the daily report.",
    )
    built.jobs.append(metrics_job)
    built.schedules.append(aggregation_schedule(metrics_job, parts))
    for p in programs:
        job = dg.define_asset_job(
            f"{p.group}_reports",
            selection=dg.AssetSelection.assets(report_key(p), DASHBOARD_KEY),
            tags={"engage/program": p.programId},
            description=f"{p.programName}: the spec's analysis and report job (its report and the dashboard).",
        )
        status = running if p.enabled else dg.DefaultScheduleStatus.STOPPED
        crons = list(REPORT_CRONS.get(p.programId, DEFAULT_CRONS))
        built.jobs.append(job)
        built.schedules.append(
            dg.ScheduleDefinition(
                name=f"{p.group}_report_schedule",
                job=job,
                cron_schedule=crons if len(crons) > 1 else crons[0],
                execution_timezone="UTC",
                default_status=status,
            )
        )
    built.jobs.append(
        dg.define_asset_job(
            REPORTS_JOB,
            selection=dg.AssetSelection.assets(*(report_key(p) for p in programs), DASHBOARD_KEY),
            description="Every program's report and the dashboard.",
        )
    )
    return built
