"""Operational alerts: the `AlertSink` interface (`base`) and its implementations.

- local: `file.FileAlertSink`, a JSON-lines file under ENGAGE_HOME;
- production: `sns.SnsAlertSink`, an SNS topic.

Import each class from its module.
"""
