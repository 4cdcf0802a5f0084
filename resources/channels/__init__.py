"""Delivery channels: the `DeliveryChannel` / `ChannelSession` interface (`base`) and its implementations.

| channel | local                                                  | production                                |
|---------|--------------------------------------------------------|-------------------------------------------|
| email   | `smtp.SmtpEmailChannel` → the capture server           | `ses.SesEmailChannel` (SES v2)            |
| sms     | `outbox.OutboxSmsChannel` (SQLite outbox)              | `sns.SnsSmsChannel` (SNS publish)         |
| push    | `outbox.OutboxPushChannel` (SQLite outbox)             | `sns.SnsPushChannel` (SNS publish)        |
| phone   | `engagement_channels.CallTaskChannel` → the EngagementStore (SQLite locally, DynamoDB in production) |
| in-app  | `engagement_channels.InboxChannel` → the EngagementStore                                            |

Shared parts: `mime` (the RFC 5322 message SMTP and SES send), `aws_errors` (SES/SNS error classification) and
`throttle` (the per-channel token bucket the delivery engine uses).  Import each class from its module.
"""
