"""Where operational alerts go: a JSON-lines file under ENGAGE_HOME locally, an SNS topic in production.

An alert names the job, run, failed steps and error class; never a customer, an e-mail or a phone number (the
error text is cut to its first line and truncated, and the sensor never reads row data).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import dagster as dg

from resources.aws import AwsClientConfig


class AlertSink(dg.ConfigurableResource, ABC):
    @abstractmethod
    def send(self, alert: dict[str, Any]) -> str:
        """Deliver one alert; return where it went (a path or a message id)."""


class FileAlertSink(AlertSink):
    """Appends one JSON object per line to `path` (what `make dev` users tail)."""

    path: str

    def send(self, alert: dict[str, Any]) -> str:
        target = Path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(alert, sort_keys=True) + "\n"
        # One write of a line shorter than PIPE_BUF with O_APPEND: concurrent sensors never interleave lines.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return str(target)


class SnsAlertSink(AwsClientConfig, AlertSink):
    """Publishes to an SNS topic (e-mail, chat or paging subscriptions hang off it)."""

    topic_arn: str

    def send(self, alert: dict[str, Any]) -> str:
        sns = self.aws_client("sns")
        subject = f"Engage: {alert['job']} failed"[:100]
        response = sns.publish(TopicArn=self.topic_arn, Subject=subject, Message=json.dumps(alert, sort_keys=True))
        return response["MessageId"]
