"""Production: the daily metrics to CloudWatch (PutMetricData), namespace `Engage/Programs`, each metric named as
its program_daily_metrics column with the dimension `Program` (the programId), timestamped at the day's 23:59 UTC.

CloudWatch takes data points up to two weeks old: a backfill of an older day is refused here with a clear error
(`StaleMetricsError`) rather than sent and dropped.  Publishing a day again adds data points CloudWatch aggregates
(its statistics per period); the day's `Maximum` is the figure either way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from pydantic import Field, PrivateAttr

from resources.aws import AwsClientConfig
from resources.metrics_publisher.base import NAMESPACE, DailyMetric, MetricsPublisher

PUT_BATCH = 500  # PutMetricData takes up to 1,000 metrics (1 MB) a request
MAX_AGE = timedelta(days=14)


class StaleMetricsError(ValueError):
    """A day older than CloudWatch accepts."""


def timestamp(metric: DailyMetric) -> datetime:
    """The day's 23:59 UTC (the aggregation's time)."""
    return datetime.combine(metric.day, time(23, 59), tzinfo=UTC)


class CloudWatchMetricsPublisher(AwsClientConfig, MetricsPublisher):
    """PutMetricData to `namespace`, dimension Program."""

    namespace: str = Field(default=NAMESPACE, description="The CloudWatch namespace of the programs' metrics.")

    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        """The boto3 CloudWatch client, made on first use."""
        if self._client is None:
            self._client = self.aws_client("cloudwatch")
        return self._client

    def datum(self, metric: DailyMetric) -> dict[str, Any]:
        """The MetricData entry of a metric."""
        return {
            "MetricName": metric.metric,
            "Dimensions": [{"Name": "Program", "Value": metric.program_id}],
            "Timestamp": timestamp(metric),
            "Value": float(metric.value),
            "Unit": metric.unit,
        }

    def publish(self, metrics: Sequence[DailyMetric], now: datetime | None = None) -> int:
        """PutMetricData in batches; a day older than two weeks is refused before anything is sent."""
        now = now or datetime.now(UTC)
        stale = sorted({m.day.isoformat() for m in metrics if now - timestamp(m) > MAX_AGE})
        if stale:
            raise StaleMetricsError(
                f"CloudWatch takes data points up to two weeks old; not publishing {', '.join(stale)}"
            )
        for start in range(0, len(metrics), PUT_BATCH):
            batch = metrics[start : start + PUT_BATCH]
            self.client().put_metric_data(Namespace=self.namespace, MetricData=[self.datum(m) for m in batch])
        return len(metrics)

    @property
    def destination(self) -> str:
        return f"CloudWatch {self.namespace} ({self.region_name})"
