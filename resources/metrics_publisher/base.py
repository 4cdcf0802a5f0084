"""The daily metrics a publisher receives: one value per program, metric and day (`program_daily_metrics`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg

NAMESPACE = "Engage/Programs"
# CloudWatch's units: counts are `Count`; dollars and ROI have no CloudWatch unit (`None`).
COUNT_METRICS = frozenset({"sent", "delivered", "opened", "clicked", "converted"})


@dataclass(frozen=True)
class DailyMetric:
    """One program's figure for one day (`metric` a column of program_daily_metrics: sent, …, cost_usd, roi)."""

    day: date
    program_id: str
    metric: str
    value: float

    @property
    def unit(self) -> str:
        """The CloudWatch unit."""
        return "Count" if self.metric in COUNT_METRICS else "None"


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
