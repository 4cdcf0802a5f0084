"""Reports (#11, item 6): rendered from a hand-made metrics warehouse (tests/metrics_fixture.py), the charts valid
PNG images of the fixture's figures, the Markdown tables holding its numbers; a report with no data says so; the
daily metrics asset records the day's figures and publishes them; the spec's report schedules."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from engage_assets.assets.reports import (
    DAILY_METRICS_KEY,
    DASHBOARD_KEY,
    REPORT_CRONS,
    build_reports,
    report_key,
)
from engage_assets.domain.config import load_programs
from engage_assets.domain.reports.build import dashboard, program_report
from engage_assets.domain.reports.charts import (
    channel_chart,
    funnel_chart,
    funnel_share_chart,
    lift_chart,
    roi_chart,
    segment_chart,
)
from engage_assets.domain.reports.data import MetricDataError, read_metric_tables
from engage_assets.domain.reports.render import NO_DATA, to_html, to_markdown
from resources.metrics_publisher.local import LocalMetricsLog
from resources.report_files import ReportFolder
from resources.warehouse.duckdb import DuckDBWarehouse
from tests.metrics_fixture import DAYS, PROGRAMS, write_metrics_warehouse

ROOT = Path(__file__).resolve().parent.parent
PNG_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG after checking it whole: signature, every chunk's CRC, IHDR first, IEND last, and
    the image data inflating to exactly the rows IHDR announces."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append(kind)
        idat += body if kind == b"IDAT" else b""
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and pos == len(data)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    assert len(zlib.decompress(idat)) == height * (1 + (width * channels * depth + 7) // 8)
    return width, height


def images(markdown: str) -> list[bytes]:
    return [base64.b64decode(m) for m in PNG_URI.findall(markdown)]


@pytest.fixture
def tables(tmp_path):
    warehouse = DuckDBWarehouse(path=str(write_metrics_warehouse(tmp_path / "fixture.duckdb")))
    return read_metric_tables(warehouse.query_arrow_many)


def test_a_program_report_holds_the_fixture_s_numbers_and_five_valid_charts(tables, tmp_path):
    report = program_report("churn-prevention", "Churn Prevention", tables, "test")
    md = to_markdown(report)
    # Lift: 1,550 of 19,042 treated (8.14 %) against 110 of 2,164 held out (5.08 %): +3.1 pp, CI +2.0 to +4.1 pp.
    assert "| Churn Prevention | 1,550 / 19,042 | 8.14 % | 110 / 2,164 | 5.08 % | +3.1 pp | +2.0 pp to +4.1 pp |" in md
    # The spec's metrics in its terms, measured beside the spec's figure.
    assert "| Retention rate | risk_level: critical | 41.2 % | 46.0 % |" in md
    assert "| Revenue saved (USD) |  | $1,543,600 | $2,100,000 per year |" in md
    assert "| ROI |  | 2,026 % | 2,800 % |" in md
    # Funnel sums over segments and channels; the daily rows; last-touch attribution by channel.
    assert "| Candidates | 21,206 | 100.0 % |" in md and "| Converted | 1,550 | 7.3 % |" in md
    assert "| 2026-11-29 | 1,250 | 1,225 | 490 | 245 | 99 | $1,875.00 | $39,600 | 2,112 % |" in md
    assert "| email | 1 | $400.00 | 1 | $400.00 |" in md and "| phone | 1 | $400.00 | 0 | $0.00 |" in md
    assert "proactive" not in md.lower()  # another program's rows stay out
    pngs = images(md)
    assert len(pngs) == 5
    for png in pngs:
        width, height = png_size(png)
        assert width > 300 and height > 100
    html = to_html(report)
    assert html.count('<img alt="') == 5 and '<td class="num">21,206</td>' in html


def test_the_charts_draw_the_fixture_s_figures(tables):
    mine = tables.for_program("churn-prevention")
    funnel = funnel_chart(mine.funnel)
    assert funnel is not None
    counts = {r["stage"]: r["count"] for r in funnel["data"]["values"]}
    assert counts == {
        "Candidates": 21206,
        "Offered": 19042,
        "Sent": 19042,
        "Delivered": 18580,
        "Opened": 6112,
        "Clicked": 3056,
        "Converted": 1550,
    }
    # The segment and channel cuts are the model's total rows, never the channel rows summed (which repeat their
    # segment's candidates).
    segments = segment_chart(mine.funnel)
    assert segments is not None
    assert {r["segment"]: r["candidates"] for r in segments["data"]["values"]} == {
        "critical": 3829,
        "high": 10599,
        "medium": 6778,
    }
    channels = channel_chart(mine.funnel)
    assert channels is not None
    rates = {(r["channel"], r["series"]): r["rate"] for r in channels["data"]["values"]}
    assert rates[("email", "Conversion rate (of sent)")] == pytest.approx(1140 / 15620)
    assert rates[("phone", "Delivery rate (of sent)")] == pytest.approx(3300 / 3422)
    roi = roi_chart(mine.daily, PROGRAMS)
    assert roi is not None and [r["roi"] for r in roi["data"]["values"]] == pytest.approx([21.333, 21.333, 21.12])
    lift = lift_chart(tables.lift, PROGRAMS)
    assert lift is not None
    rows = {r["program"]: (r["lift"], r["low"], r["high"]) for r in lift["data"]["values"]}
    assert rows == {"Churn Prevention": (0.0306, 0.0201, 0.0411), "Proactive Refund Offers": (0.0689, 0.0458, 0.092)}


def test_the_dashboard_compares_every_program(tables):
    md = to_markdown(dashboard(PROGRAMS, tables, "test"))
    assert "| Proactive Refund Offers | 1,700 / 9,000 | 18.89 % | 120 / 1,000 | 12.00 % | +6.9 pp |" in md
    assert "| Proactive Refund Offers | Satisfaction recovery rate | impact_level: high | 91.3 % | 95.0 % |" in md
    # Proactive refunds' funnel has no total rows: its finest rows are summed (10,000 candidates, 1,700 converted).
    assert len(images(md)) == 5 and NO_DATA not in md
    share = funnel_share_chart(tables.funnel, PROGRAMS)
    assert share is not None
    shares = {(r["program"], r["stage"]): r["share"] for r in share["data"]["values"]}
    assert shares[("Proactive Refund Offers", "Converted")] == pytest.approx(0.17)
    assert shares[("Churn Prevention", "Converted")] == pytest.approx(1550 / 21206)
    assert not any(p == "Win-Back Campaigns" for p, _ in shares)  # no candidates: not drawn


def test_a_program_with_nothing_measured_says_no_data_and_lists_what_will_be(tables):
    md = to_markdown(program_report("win-back-campaigns", "Win-Back Campaigns", tables, "test"))
    assert f"{NO_DATA}: nothing has been measured for this program" in md
    assert "| Win-back rate |  | no data | 17.2 % |" in md and not images(md)


def test_with_no_metric_model_a_report_says_no_data_yet(tmp_path):
    empty = DuckDBWarehouse(path=str(tmp_path / "empty.duckdb"))
    import duckdb

    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    tables = read_metric_tables(empty.query_arrow_many)
    assert not tables.measured and len(tables.missing) == 5
    md = to_markdown(program_report("churn-prevention", "Churn Prevention", tables, "test"))
    assert f"## {NO_DATA}" in md and "metrics.program_funnel" in md and not images(md)
    html = to_html(dashboard(PROGRAMS, tables, "test"))
    assert 'class="note nodata"' in html and "<img" not in html


def test_a_program_without_rows_and_a_chart_without_data_say_so(tmp_path):
    warehouse = DuckDBWarehouse(path=str(write_metrics_warehouse(tmp_path / "m.duckdb", ("holdout_lift",))))
    tables = read_metric_tables(warehouse.query_arrow_many)
    other = to_markdown(program_report("win-back-campaigns", "Win-Back Campaigns", tables, "test"))
    assert f"{NO_DATA}: the warehouse has no metric model yet" in other and not images(other)
    # Lift is measured, nothing else: the lift chart is drawn, each other chart says what it waits for.
    md = to_markdown(program_report("churn-prevention", "Churn Prevention", tables, "test"))
    assert len(images(md)) == 1
    assert f"{NO_DATA}: no day with cost and revenue yet (metrics.program_daily_metrics)." in md


def test_a_metric_model_without_a_contract_column_is_a_clear_error(tmp_path):
    import duckdb

    path = tmp_path / "bad.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA metrics; CREATE TABLE metrics.holdout_lift (program_id VARCHAR, lift DOUBLE)")
    with pytest.raises(MetricDataError, match="metrics.holdout_lift lacks the contract's column"):
        read_metric_tables(DuckDBWarehouse(path=str(path)).query_arrow_many)


def programs():
    return list(load_programs(ROOT / "program_configs"))


def test_the_assets_record_the_day_write_the_files_and_publish(tmp_path):
    everyone = programs()
    built = build_reports(everyone, set())
    warehouse = DuckDBWarehouse(path=str(write_metrics_warehouse(tmp_path / "fixture.duckdb")))
    log = LocalMetricsLog(path=str(tmp_path / "daily_metrics.sqlite"))
    resources = {
        "warehouse": warehouse,
        "report_files": ReportFolder(root=str(tmp_path / "reports")),
        "metrics_publisher": log,
    }
    day = DAYS[2].isoformat()
    result = dg.materialize(
        [a for a in built.assets if DAILY_METRICS_KEY in a.keys], resources=resources, partition_key=day
    )
    (mat,) = result.asset_materializations_for_node("reports__daily_metrics")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert meta["churn_prevention.sent"] == 1250 and meta["churn_prevention.converted"] == 99
    assert meta["proactive_refunds.revenue_usd"] == 244000.0
    assert meta["proactive_refunds.roi_percent"] == pytest.approx(1134.9)
    assert meta["win_back.sent"] == 0 and "win_back.roi_percent" not in meta  # modelled, nothing sent that day
    assert (tmp_path / "reports" / "daily" / f"{day}.html").exists()
    assert log.read(DAYS[2])[("churn-prevention", "opened")] == 490.0
    report_assets = [a for a in built.assets if a.keys & {DASHBOARD_KEY, *(report_key(p) for p in everyone)}]
    dg.materialize(report_assets, resources=resources)
    for name in ("dashboard.html", "churn_prevention/report.html", "win_back/report.html"):
        assert (tmp_path / "reports" / name).read_text().startswith("<!doctype html>")
        assert (tmp_path / "reports" / name).stat().st_mode & 0o777 == 0o644
    assert NO_DATA in (tmp_path / "reports" / "win_back" / "report.html").read_text()


def test_on_an_empty_warehouse_the_assets_succeed_and_say_no_data(tmp_path):
    import duckdb

    duckdb.connect(str(tmp_path / "w.duckdb")).close()
    built = build_reports(programs(), set())
    resources = {
        "warehouse": DuckDBWarehouse(path=str(tmp_path / "w.duckdb")),
        "report_files": ReportFolder(root=str(tmp_path / "reports")),
        "metrics_publisher": LocalMetricsLog(path=str(tmp_path / "m.sqlite")),
    }
    daily = [a for a in built.assets if DAILY_METRICS_KEY in a.keys]
    result = dg.materialize(daily, resources=resources, partition_key=date(2026, 11, 29).isoformat())
    (mat,) = result.asset_materializations_for_node("reports__daily_metrics")
    assert mat.metadata["published"].value == "nothing to publish"
    assert NO_DATA in mat.metadata["report"].value
    assert dg.materialize([a for a in built.assets if a not in daily], resources=resources).success


def test_the_spec_s_report_jobs_run_at_the_spec_s_times_by_default():
    built = build_reports(programs(), set())
    schedules = {s.name: s for s in built.schedules}
    assert schedules["metrics_aggregation_schedule"].cron_schedule == "59 23 * * *"
    assert schedules["proactive_refunds_report_schedule"].cron_schedule == "0 18 * * *"
    assert schedules["churn_prevention_report_schedule"].cron_schedule == "0 6 * * *"
    assert schedules["abandoned_cart_recovery_report_schedule"].cron_schedule == list(
        REPORT_CRONS["abandoned-cart-recovery"]
    )
    assert {s.default_status for s in built.schedules} == {dg.DefaultScheduleStatus.RUNNING}


def test_the_cli_s_names_are_the_assets_names():
    from engage_assets.assets import reports
    from engage_assets.cli import reports as cli

    assert (cli.GROUP, cli.METRICS_JOB, cli.REPORTS_JOB) == (reports.GROUP, reports.METRICS_JOB, reports.REPORTS_JOB)


def test_the_2359_aggregation_runs_the_ending_day_and_the_day_before_again():
    from datetime import UTC, datetime

    built = build_reports(programs(), set())
    (schedule,) = [s for s in built.schedules if s.name == "metrics_aggregation_schedule"]
    assert schedule.cron_schedule == "59 23 * * *"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 30, 23, 59, tzinfo=UTC))
    requests = schedule(context)
    assert [r.partition_key for r in requests] == ["2026-11-29", "2026-11-30"]


def test_engage_run_rebuilds_only_the_models_the_reports_alone_read(tmp_path, monkeypatch):
    """After the simulated responses, `engage run` rebuilds the metric models (and what only they read), not the
    marts the programs read."""
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    monkeypatch.setenv("ENGAGE_ENV", "local")
    from engage_assets.cli.reports import metric_models
    from engage_assets.definitions import WAREHOUSE_JOB, build_definitions

    models = {k.path[-1] for k in metric_models(build_definitions(), WAREHOUSE_JOB)}
    assert {"program_daily_metrics", "program_funnel", "holdout_lift", "program_metrics", "touch_attribution"} <= models
    assert not models & {"customers", "order_tracking", "churned_customers", "customer_analytics", "carts"}


def test_the_day_s_report_lists_each_program_s_figures_and_names_the_quiet_ones(tables):
    from engage_assets.domain.reports.build import daily_report

    md = to_markdown(daily_report(DAYS[2], PROGRAMS, tables, "test"))
    assert (
        "| Proactive Refund Offers | 2026-11-29 | 3,000 | 2,940 | 2,352 | 700 | 610 | $21,500 | $244,000 | 1,135 % |"
        in md
    )
    assert "No figures on this day for: Win-Back Campaigns" in md
    empty = to_markdown(daily_report(date(2026, 11, 1), PROGRAMS, tables, "test"))
    assert f"{NO_DATA}: no program has figures for 2026-11-01." in empty
