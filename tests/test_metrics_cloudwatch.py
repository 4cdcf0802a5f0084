"""The daily metrics in production go to CloudWatch (PutMetricData), checked on a moto server over the wire: each
figure under its metric name with the program's dimension, at the day's 23:59 UTC; a day past CloudWatch's two
weeks is refused before anything is sent; the production resources choose this publisher."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from resources.metrics_publisher.base import DailyMetric
from resources.metrics_publisher.cloudwatch import CloudWatchMetricsPublisher, StaleMetricsError

REGION = "us-east-1"


def stats(publisher: CloudWatchMetricsPublisher, metric: str, program: str, day: date) -> list[dict]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    answer = publisher.client().get_metric_statistics(
        Namespace=publisher.namespace,
        MetricName=metric,
        Dimensions=[{"Name": "Program", "Value": program}],
        StartTime=start,
        EndTime=start + timedelta(days=1),
        Period=86400,
        Statistics=["Maximum", "SampleCount"],
    )
    return answer["Datapoints"]


def test_the_day_s_metrics_reach_cloudwatch_with_their_program(moto_endpoint):
    namespace = f"Engage/Test-{uuid.uuid4().hex[:8]}"
    publisher = CloudWatchMetricsPublisher(region_name=REGION, endpoint_url=moto_endpoint, namespace=namespace)
    day = datetime.now(UTC).date() - timedelta(days=1)
    metrics = [
        DailyMetric(day, "churn-prevention", "sent", 1250.0),
        DailyMetric(day, "churn-prevention", "roi", 20.12),
        DailyMetric(day, "proactive-refunds", "sent", 3000.0),
    ] + [DailyMetric(day, f"p{i}", "converted", float(i)) for i in range(600)]  # over one request's batch
    assert publisher.publish(metrics) == 603
    (sent,) = stats(publisher, "sent", "churn-prevention", day)
    assert sent["Maximum"] == 1250.0 and sent["SampleCount"] == 1.0 and sent["Unit"] == "Count"
    (refunds,) = stats(publisher, "sent", "proactive-refunds", day)
    assert refunds["Maximum"] == 3000.0
    (roi,) = stats(publisher, "roi", "churn-prevention", day)
    assert roi["Maximum"] == pytest.approx(20.12)
    (last,) = stats(publisher, "converted", "p599", day)
    assert last["Maximum"] == 599.0
    listed = publisher.client().list_metrics(Namespace=namespace, MetricName="sent")["Metrics"]
    programs = {d["Value"] for m in listed for d in m["Dimensions"] if d["Name"] == "Program"}
    assert programs == {"churn-prevention", "proactive-refunds"}


def test_a_day_older_than_two_weeks_is_refused_before_anything_is_sent(moto_endpoint):
    namespace = f"Engage/Test-{uuid.uuid4().hex[:8]}"
    publisher = CloudWatchMetricsPublisher(region_name=REGION, endpoint_url=moto_endpoint, namespace=namespace)
    old = datetime.now(UTC).date() - timedelta(days=20)
    fresh = datetime.now(UTC).date()
    with pytest.raises(StaleMetricsError, match=old.isoformat()):
        publisher.publish([DailyMetric(fresh, "churn-prevention", "sent", 1.0), DailyMetric(old, "x", "sent", 1.0)])
    assert publisher.client().list_metrics(Namespace=namespace)["Metrics"] == []


def test_production_publishes_to_cloudwatch_and_local_to_a_file(tmp_path, monkeypatch):
    from engage_assets.settings import Settings
    from resources.by_env import local_resources, prod_resources
    from resources.metrics_publisher.local import LocalMetricsLog
    from tests.test_prod_definitions import PROD_ENV

    local = local_resources(Settings(home=tmp_path))
    assert isinstance(local["metrics_publisher"], LocalMetricsLog)
    assert local["report_files"].root == str(tmp_path / "reports")
    monkeypatch.setenv("ENGAGE_ENV", "prod")
    for k, v in PROD_ENV.items():
        monkeypatch.setenv(k, v)
    prod = prod_resources(Settings(home=tmp_path))
    publisher = prod["metrics_publisher"]
    assert isinstance(publisher, CloudWatchMetricsPublisher) and publisher.region_name == "eu-west-1"
