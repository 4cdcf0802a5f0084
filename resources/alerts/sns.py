"""Production alerts: an SNS topic (e-mail, chat or paging subscriptions hang off it)."""

from __future__ import annotations

import json
from typing import Any

from resources.alerts.base import AlertSink
from resources.aws import AwsClientConfig


class SnsAlertSink(AwsClientConfig, AlertSink):
    """Publishes to an SNS topic (e-mail, chat or paging subscriptions hang off it)."""

    topic_arn: str

    def send(self, alert: dict[str, Any]) -> str:
        """Publish the alert (botocore retries throttling); returns SNS's message id."""
        sns = self.aws_client("sns")
        subject = f"Engage: {alert['job']} failed"[:100]
        response = sns.publish(TopicArn=self.topic_arn, Subject=subject, Message=json.dumps(alert, sort_keys=True))
        return response["MessageId"]
