"""The one switch between the embedded default and production (ARCHITECTURE §4): same code above it.

The event path's builders (the stores, the ledger, the event queue: what the decision runs use) are in
`resources.event_path`, which imports production classes only for production; they are re-exported here.

`ENGAGE_ENV=local` (default): DuckDB, SQLite, in-process models, Parquet under ENGAGE_HOME, the SMTP capture and
outboxes.  `ENGAGE_ENV=prod`: Snowflake (dagster-snowflake), DynamoDB, SageMaker, S3 + Glue, SES/SNS.  Names (tables,
topics, bucket, region) come from the settings, read and checked at load; secrets through `dg.EnvVar`, read when a
run starts, never stored in code.  The serving API picks its stores here too (`serving_stores`).
"""

from __future__ import annotations

from typing import Any

from engage_assets.settings import Settings
from resources.alerts.file import FileAlertSink
from resources.alerts.sns import SnsAlertSink
from resources.channels.outbox import OutboxPushChannel, OutboxSmsChannel
from resources.channels.ses import SesEmailChannel
from resources.channels.smtp import SmtpEmailChannel
from resources.channels.sns import SnsPushChannel, SnsSmsChannel
from resources.customer_state import CustomerState
from resources.dbt import dbt_resource
from resources.event_path import (  # the event path's builders, and re-exported: callers name them here
    delivery_ledger,
    event_resources,
    event_source,
    platform_history,
    reactive_resources,
    scoring_resource,
    serving_stores,
    snowflake_warehouse,
)
from resources.exports.local import LocalParquetExports
from resources.exports.s3 import S3ParquetExports
from resources.metrics_publisher.cloudwatch import CloudWatchMetricsPublisher
from resources.metrics_publisher.local import LocalMetricsLog
from resources.outcomes.base import OutcomeStore
from resources.outcomes.dynamodb import DynamoDbOutcomeStore
from resources.outcomes.sqlite import SqliteOutcomeStore
from resources.pressure import ContactPressureResource
from resources.refund_events.eventbridge import EventBridgeRefundPublisher
from resources.refund_events.local import LocalRefundEventLog
from resources.refund_ledger.resource import DynamoDbRefundLedgerResource, SqliteRefundLedgerResource
from resources.report_files import ReportFolder
from resources.scoring.deploy import LocalModelDeployResource
from resources.scoring.sagemaker_deploy import SageMakerModelDeployResource
from resources.staging import ArrowParquetIOManager, ModelStoreResource, RejectionLogResource
from resources.warehouse.athena import AthenaWarehouse
from resources.warehouse.base import ATHENA_WAREHOUSE_KEY
from resources.warehouse.duckdb import DuckDBWarehouse

__all__ = [
    "build_resources",
    "delivery_ledger",
    "event_source",
    "local_resources",
    "outcome_store",
    "prod_resources",
    "reactive_resources",
    "serving_stores",
]


def local_resources(settings: Settings) -> dict[str, Any]:
    """The embedded default: every part on this machine, state under ENGAGE_HOME."""
    warehouse = DuckDBWarehouse(path=str(settings.warehouse_path), memory_limit=settings.warehouse_memory_limit)
    refunds = SqliteRefundLedgerResource(path=str(settings.refund_ledger_path))
    candidates, engagement = serving_stores(settings)
    return {
        "warehouse": warehouse,
        # A connector of `type: athena` reads the same embedded file locally.
        ATHENA_WAREHOUSE_KEY: warehouse,
        "store": candidates,
        "scoring": scoring_resource(settings),
        "model_deploy": LocalModelDeployResource(),
        "exports": LocalParquetExports(root=str(settings.export_root), warehouse_path=str(settings.warehouse_path)),
        "platform_history": platform_history(settings),
        "models": ModelStoreResource(root=str(settings.model_root)),
        "rejections": RejectionLogResource(base_path=str(settings.stage_root)),
        "io_manager": ArrowParquetIOManager(base_path=str(settings.stage_root)),
        "dbt": dbt_resource("local"),
        "alerts": FileAlertSink(path=str(settings.alerts_path)),
        "engagement": engagement,
        "delivery_ledger": delivery_ledger(settings),
        "refund_ledger": refunds,
        # Issuance events for the order and billing systems (`resources.refund_events`).
        "refund_events": LocalRefundEventLog(path=str(settings.home / "refund_events.sqlite")),
        "outcomes": outcome_store(settings),
        "contact_pressure": ContactPressureResource(),
        "customer_state": CustomerState(warehouse=warehouse, refund_ledger=refunds),
        "email_channel": SmtpEmailChannel(
            host=settings.smtp_host, port=settings.smtp_port, capture_dir=str(settings.mail_root)
        ),
        "sms_channel": OutboxSmsChannel(root=str(settings.outbox_root)),
        "push_channel": OutboxPushChannel(root=str(settings.outbox_root)),
        # The reports' HTML files and the daily metrics (CloudWatch's local stand-in).
        "report_files": ReportFolder(root=str(settings.home / "reports")),
        "metrics_publisher": LocalMetricsLog(path=str(settings.home / "daily_metrics.sqlite")),
    }


def athena_warehouse(settings: Settings) -> AthenaWarehouse:
    """Athena, for connectors of `type: athena` (sources in S3): the Glue database, the primary workgroup, results
    under s3://<bucket>/athena-results/, the push-down's stage rows under s3://<bucket>/athena-stages/."""
    return AthenaWarehouse(
        region_name=settings.required("aws_region"),
        database=settings.required("glue_database"),
        output_location=f"s3://{settings.required('s3_bucket')}/athena-results/",
        stage_location=f"s3://{settings.required('s3_bucket')}/athena-stages/",
    )


def prod_resources(settings: Settings) -> dict[str, Any]:
    """Production: Snowflake (Athena for `type: athena` connectors), DynamoDB, SageMaker, S3 + Glue, SES/SNS; the
    ledgers are DynamoDB tables that run workers on several machines share."""
    region = settings.required("aws_region")
    warehouse = snowflake_warehouse()
    stages = f"s3://{settings.required('s3_bucket')}/stages"
    refunds = DynamoDbRefundLedgerResource(table_name=settings.required("refund_table"), region_name=region)
    candidates, engagement = serving_stores(settings)
    return {
        "warehouse": warehouse,
        ATHENA_WAREHOUSE_KEY: athena_warehouse(settings),
        "store": candidates,
        "scoring": scoring_resource(settings),
        "model_deploy": SageMakerModelDeployResource(
            region_name=region,
            artifact_bucket=settings.required("s3_bucket"),
            image_uri=settings.sagemaker_image_uri,
            execution_role_arn=settings.sagemaker_role_arn,
        ),
        "exports": S3ParquetExports(
            bucket=settings.required("s3_bucket"),
            prefix="exports",
            glue_database=settings.required("glue_database"),
            region_name=region,
        ),
        "platform_history": platform_history(settings),
        # Models are trained by the platform and deployed to SageMaker endpoints; the registry keeps the
        # artifacts and metrics on the code location's volume.
        "models": ModelStoreResource(root=str(settings.model_root)),
        "rejections": RejectionLogResource(base_path=stages),
        "io_manager": ArrowParquetIOManager(base_path=stages),
        "dbt": dbt_resource("prod"),
        "engagement": engagement,
        "alerts": SnsAlertSink(topic_arn=settings.required("alert_topic_arn"), region_name=region),
        "delivery_ledger": delivery_ledger(settings),
        "refund_ledger": refunds,
        "refund_events": EventBridgeRefundPublisher(region_name=region, event_bus_name=settings.refund_event_bus),
        "outcomes": outcome_store(settings),
        "contact_pressure": ContactPressureResource(),
        # Refund states are read from the shared DynamoDB refund ledger (a worker's SQLite file would not hold them).
        "customer_state": CustomerState(warehouse=warehouse, refund_ledger=refunds),
        "email_channel": SesEmailChannel(
            region_name=region,
            from_address=settings.required("email_from"),
            configuration_set=settings.required("ses_configuration_set"),
        ),
        "sms_channel": SnsSmsChannel(region_name=region),
        "push_channel": SnsPushChannel(region_name=region, topic_arn=settings.required("push_topic_arn")),
        # Reports on the code location's volume (ENGAGE_HOME); the daily metrics to CloudWatch.
        "report_files": ReportFolder(root=str(settings.home / "reports")),
        "metrics_publisher": CloudWatchMetricsPublisher(region_name=region),
    }


def outcome_store(settings: Settings) -> OutcomeStore:
    """What the providers reported (the outcome webhooks write it; delivery reads its opt-outs): a SQLite file under
    ENGAGE_HOME, or the DynamoDB table ENGAGE_OUTCOME_TABLE."""
    if settings.env == "local":
        return SqliteOutcomeStore(path=str(settings.home / "outcomes.sqlite"))
    return DynamoDbOutcomeStore(
        table_name=settings.required("outcome_table"), region_name=settings.required("aws_region")
    )


def build_resources(settings: Settings) -> dict[str, Any]:
    """Every resource of the deployment for the environment (`engage_assets.definitions`' union of both code
    locations); the event path's location builds only `event_path_resources`."""
    base = local_resources(settings) if settings.env == "local" else prod_resources(settings)
    return {**base, **event_resources(settings)}
