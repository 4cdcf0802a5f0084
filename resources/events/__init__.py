"""Event sources for the reactive programs: the `EventSource` interface (`base`, SQS semantics) and its implementations.

- local: `local.LocalEventQueue`, a durable queue in a SQLite file (WAL) that several processes share;
- production: `sqs.SqsEventSource`, an SQS queue with a dead-letter queue; `eventbridge` provisions the EventBridge
  rule that feeds it (`provision_eventbridge_to_sqs`) and publishes events (`EventBridgePublisher`).

Import each class from its module.
"""
