"""The one switch between the embedded default and production (ARCHITECTURE §4): same code above it.

`ENGAGE_ENV=local` (default): DuckDB, SQLite, in-process models, Parquet under ENGAGE_HOME, the SMTP capture and
outboxes.  `ENGAGE_ENV=prod`: Snowflake (dagster-snowflake), DynamoDB, SageMaker, S3 + Glue, SES/SNS.  Names (tables,
topics, bucket, region) come from the settings, read and checked at load; secrets through `dg.EnvVar`, read when a
run starts, never stored in code.  The serving API picks its stores here too (`serving_stores`).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from engage_assets.settings import Settings
from resources.alerts.file import FileAlertSink
from resources.alerts.sns import SnsAlertSink
from resources.cart_state.base import CartStateStore
from resources.cart_state.dynamodb import DynamoDbCartState
from resources.cart_state.sqlite import SqliteCartState
from resources.channels.outbox import OutboxPushChannel, OutboxSmsChannel
from resources.channels.ses import SesEmailChannel
from resources.channels.smtp import SmtpEmailChannel
from resources.channels.sns import SnsPushChannel, SnsSmsChannel
from resources.customer_state import CustomerState
from resources.dbt import dbt_resource
from resources.dedup.base import DedupStore
from resources.dedup.dynamodb import DynamoDbDedupStore
from resources.dedup.sqlite import SqliteDedupStore
from resources.delivery_ledger.resource import (
    DeliveryLedgerResource,
    DynamoDbDeliveryLedgerResource,
    SqliteDeliveryLedgerResource,
)
from resources.engagement.base import EngagementStore
from resources.engagement.dynamodb import DynamoDbEngagementStore
from resources.engagement.sqlite import SqliteEngagementStore
from resources.event_batches import EventBatchStore
from resources.events.base import EventSource
from resources.events.local import LocalEventQueue
from resources.events.sqs import SqsEventSource
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
from resources.scoring.local import LocalScoringResource
from resources.scoring.sagemaker import SageMakerScoringResource
from resources.scoring.sagemaker_deploy import SageMakerModelDeployResource
from resources.staging import ArrowParquetIOManager, ModelStoreResource, RejectionLogResource
from resources.store.base import CandidateStore
from resources.store.dynamodb import DynamoDbCandidateStore
from resources.store.sqlite import SqliteCandidateStore
from resources.warehouse.athena import AthenaWarehouse
from resources.warehouse.base import ATHENA_WAREHOUSE_KEY
from resources.warehouse.duckdb import DuckDBWarehouse
from resources.warehouse.snowflake import SnowflakeWarehouse

# Where the platform's own history lives: ENGAGE_HOME/history locally, s3://<bucket>/history in production; the dbt
# source `platform` (dbt_project/models/staging/_sources.yml) reads `<root>/offers_*` and `<root>/contacts_*`.
HISTORY_FOLDER = "history"


def local_resources(settings: Settings) -> dict[str, Any]:
    """The embedded default: every part on this machine, state under ENGAGE_HOME."""
    warehouse = DuckDBWarehouse(path=str(settings.warehouse_path))
    refunds = SqliteRefundLedgerResource(path=str(settings.refund_ledger_path))
    candidates, engagement = serving_stores(settings)
    return {
        "warehouse": warehouse,
        # A connector of `type: athena` reads the same embedded file locally.
        ATHENA_WAREHOUSE_KEY: warehouse,
        "store": candidates,
        "scoring": LocalScoringResource(),
        "model_deploy": LocalModelDeployResource(),
        "exports": LocalParquetExports(root=str(settings.export_root), warehouse_path=str(settings.warehouse_path)),
        # The platform's own offers and contacts, which dbt's `platform` source reads (never registered as views:
        # the history is read through `marts.offer_history` / `marts.contact_history`).
        "platform_history": LocalParquetExports(
            root=str(settings.home / HISTORY_FOLDER), warehouse_path=str(settings.warehouse_path)
        ),
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


def snowflake_warehouse() -> SnowflakeWarehouse:
    """Snowflake, every credential from the environment when a run starts (dagster-snowflake's resource fields)."""
    return SnowflakeWarehouse(
        account=dg.EnvVar("SNOWFLAKE_ACCOUNT"),
        user=dg.EnvVar("SNOWFLAKE_USER"),
        password=dg.EnvVar("SNOWFLAKE_PASSWORD"),
        role=dg.EnvVar("SNOWFLAKE_ROLE"),
        warehouse=dg.EnvVar("SNOWFLAKE_WAREHOUSE"),
        database=dg.EnvVar("SNOWFLAKE_DATABASE"),
        schema=dg.EnvVar("SNOWFLAKE_SCHEMA"),
    )


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
        "scoring": SageMakerScoringResource(region_name=region),
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
        "platform_history": S3ParquetExports(
            bucket=settings.required("s3_bucket"),
            prefix=HISTORY_FOLDER,
            glue_database=settings.required("glue_database"),
            region_name=region,
        ),
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


def serving_stores(settings: Settings) -> tuple[CandidateStore, EngagementStore]:
    """The candidate and engagement stores the environment selects (the serving API and the programs share them)."""
    if settings.env == "local":
        return (
            SqliteCandidateStore(path=str(settings.store_path)),
            SqliteEngagementStore(path=str(settings.engagement_path)),
        )
    return (
        DynamoDbCandidateStore(
            table_name=settings.required("candidate_table"),
            score_cache_table_name=settings.required("score_cache_table"),
            region_name=settings.required("aws_region"),
        ),
        DynamoDbEngagementStore(
            table_name=settings.required("engagement_table"), region_name=settings.required("aws_region")
        ),
    )


def delivery_ledger(settings: Settings) -> DeliveryLedgerResource:
    """The delivery ledger every program, sensor and the serving API's GDPR deletion share."""
    if settings.env == "local":
        return SqliteDeliveryLedgerResource(path=str(settings.ledger_path))
    return DynamoDbDeliveryLedgerResource(
        table_name=settings.required("delivery_table"), region_name=settings.required("aws_region")
    )


def outcome_store(settings: Settings) -> OutcomeStore:
    """What the providers reported (the outcome webhooks write it; delivery reads its opt-outs): a SQLite file under
    ENGAGE_HOME, or the DynamoDB table ENGAGE_OUTCOME_TABLE."""
    if settings.env == "local":
        return SqliteOutcomeStore(path=str(settings.home / "outcomes.sqlite"))
    return DynamoDbOutcomeStore(
        table_name=settings.required("outcome_table"), region_name=settings.required("aws_region")
    )


def event_source(settings: Settings) -> EventSource:
    """The reactive programs' event source: the local queue file, or the SQS queue an EventBridge rule feeds."""
    if settings.env == "local":
        return LocalEventQueue(path=str(settings.events_path))
    return SqsEventSource(
        queue_url=settings.required("cart_queue_url"),
        dlq_url=settings.required("cart_dlq_url"),
        region_name=settings.required("aws_region"),
    )


def build_resources(settings: Settings) -> dict[str, Any]:
    base = local_resources(settings) if settings.env == "local" else prod_resources(settings)
    return {**base, **event_resources(settings)}


def event_resources(settings: Settings) -> dict[str, Any]:
    """What the reactive programs' sensor and decision stages add: the event queue, the durable batch files
    between them, the dedup claims and the cart state (in production: ENGAGE_CART_QUEUE_URL, ENGAGE_CART_DLQ_URL,
    ENGAGE_REACTIVE_TABLE)."""
    dedup, cart_state = reactive_state(settings)
    return {
        "events": event_source(settings),
        "event_batches": EventBatchStore(root=str(settings.event_batch_root)),
        "dedup": dedup,
        "cart_state": cart_state,
    }


def reactive_state(settings: Settings) -> tuple[DedupStore, CartStateStore]:
    """The reactive programs' event state: de-duplication claims and cart state (purchases, stock changes): one
    SQLite file under ENGAGE_HOME, or one DynamoDB table (ENGAGE_REACTIVE_TABLE) every consumer shares."""
    if settings.env == "local":
        path = str(settings.home / "reactive.sqlite")
        return SqliteDedupStore(path=path), SqliteCartState(path=path)
    table, region = settings.required("reactive_table"), settings.required("aws_region")
    return DynamoDbDedupStore(table_name=table, region_name=region), DynamoDbCartState(
        table_name=table, region_name=region
    )


def reactive_resources(settings: Settings) -> dict[str, Any]:
    """What the reactive decision path (`engage_assets.reactive`) reads and writes, for the environment."""
    candidates, _ = serving_stores(settings)
    dedup, cart_state = reactive_state(settings)
    local = settings.env == "local"
    return {
        "warehouse": DuckDBWarehouse(path=str(settings.warehouse_path)) if local else snowflake_warehouse(),
        "scoring": LocalScoringResource()
        if local
        else SageMakerScoringResource(region_name=settings.required("aws_region")),
        "models": ModelStoreResource(root=str(settings.model_root)),
        "store": candidates,
        "delivery_ledger": delivery_ledger(settings),
        "dedup": dedup,
        "cart_state": cart_state,
    }
