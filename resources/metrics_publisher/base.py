"""The daily metrics a publisher receives: one value per program, metric and day (`program_daily_metrics`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg

NAMESPACE = "Engage/Programs"
# CloudWatch's units: counts are `Count`, ROI `Percent`; dollars have no CloudWatch unit (`None`).
COUNT_METRICS = frozenset({"sent", "delivered", "opened", "clicked", "converted"})


@dataclass(frozen=True)
class DailyMetric:
    """One program's figure for one day (`metric` a column of program_daily_metrics: sent, …, cost_usd, or roi_percent)."""

    day: date
    program_id: str
    metric: str
    value: float

    @property
    def unit(self) -> str:
        """The CloudWatch unit."""
        if self.metric in COUNT_METRICS:
            return "Count"
        return "Percent" if self.metric.endswith("_percent") else "None"


class MetricsPublisher(dg.ConfigurableResource, ABC):
    """Publishes the day's metrics; publishing a day again replaces nothing it should not (idempotent per day,
    program and metric where the backend allows it)."""

    @abstractmethod
    def publish(self, metrics: Sequence[DailyMetric]) -> int:
        """Publish `metrics`; how many were published."""

    @property
    def destination(self) -> str:
        """Where they go, for the asset's metadata."""
        return type(self).__name__
