"""The alert interface: where operational alerts go (a JSON-lines file locally, an SNS topic in production).

An alert names the job, run, failed steps and error class; never a customer, an e-mail or a phone number (the
error text is cut to its first line and truncated, and the sensor never reads row data).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import dagster as dg


class AlertSink(dg.ConfigurableResource, ABC):
    """Delivers operational alerts (one JSON-able dict each)."""

    @abstractmethod
    def send(self, alert: dict[str, Any]) -> str:
        """Deliver one alert; return where it went (a path or a message id)."""
