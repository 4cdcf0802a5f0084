"""The one switch between the embedded default and production (ARCHITECTURE §4): same code above it.

`ENGAGE_ENV=local` (default): DuckDB, SQLite, in-process models, Parquet under ENGAGE_HOME.
`ENGAGE_ENV=prod`: Snowflake (dagster-snowflake), DynamoDB, SageMaker, S3 + Glue; every credential and name
comes from environment variables through `dg.EnvVar`, read when a run starts, never stored in code.
"""
from __future__ import annotations

import os
from typing import Any

import dagster as dg

from engage_assets.dbt import dbt_resource
from engage_assets.settings import Settings
from resources.alerts import FileAlertSink, SnsAlertSink
from resources.engagement import DynamoDbEngagementStore, SqliteEngagementStore
from resources.staging import ArrowParquetIOManager, ModelStoreResource, RejectionLogResource


def local_resources(settings: Settings) -> dict[str, Any]:
    from resources.exports import LocalParquetExports
    from resources.scoring import LocalScoringResource
    from resources.store_sqlite import SqliteCandidateStore
    from resources.warehouse import DuckDBWarehouse

    home = settings.home
    return {
        "warehouse": DuckDBWarehouse(path=str(settings.warehouse_path)),
        "store": SqliteCandidateStore(path=str(settings.store_path)),
        "scoring": LocalScoringResource(),
        "exports": LocalParquetExports(root=str(settings.export_root), warehouse_path=str(settings.warehouse_path)),
        "models": ModelStoreResource(root=str(settings.model_root)),
        "rejections": RejectionLogResource(base_path=str(settings.stage_root)),
        "io_manager": ArrowParquetIOManager(base_path=str(home / "stages")),
        "dbt": dbt_resource("local"),
        "alerts": FileAlertSink(path=str(home / "alerts.jsonl")),
        "engagement": SqliteEngagementStore(path=str(settings.engagement_path)),
        **delivery_resources(settings, local=True),
    }


def prod_resources(settings: Settings) -> dict[str, Any]:
    from engage_assets.delivery.conditions import CustomerState
    from resources.exports import S3ParquetExports
    from resources.scoring import SageMakerScoringResource
    from resources.store import DynamoDbCandidateStore
    from resources.warehouse import SnowflakeWarehouse

    bucket = dg.EnvVar("ENGAGE_S3_BUCKET")
    # SnowflakeWarehouse builds dagster-snowflake's SnowflakeResource from these fields on first use.
    warehouse = SnowflakeWarehouse(
        account=dg.EnvVar("SNOWFLAKE_ACCOUNT"), user=dg.EnvVar("SNOWFLAKE_USER"),
        password=dg.EnvVar("SNOWFLAKE_PASSWORD"), role=dg.EnvVar("SNOWFLAKE_ROLE"),
        warehouse=dg.EnvVar("SNOWFLAKE_WAREHOUSE"), database=dg.EnvVar("SNOWFLAKE_DATABASE"),
        schema=dg.EnvVar("SNOWFLAKE_SCHEMA"),
    )
    delivery = delivery_resources(settings, local=False)
    return {
        "warehouse": warehouse,
        # Refund states are read from the shared DynamoDB refund ledger (a worker's SQLite file would not hold them).
        "customer_state": CustomerState(warehouse=warehouse, refund_ledger=delivery["refund_ledger"]),
        "store": DynamoDbCandidateStore(
            table_name=dg.EnvVar("ENGAGE_CANDIDATE_TABLE"), score_cache_table_name=dg.EnvVar("ENGAGE_SCORE_CACHE_TABLE"),
            region_name=dg.EnvVar("AWS_REGION"),
        ),
        "scoring": SageMakerScoringResource(region_name=dg.EnvVar("AWS_REGION")),
        "exports": S3ParquetExports(bucket=bucket, prefix="exports", glue_database=dg.EnvVar("ENGAGE_GLUE_DATABASE"),
                                    region_name=dg.EnvVar("AWS_REGION")),
        # Models are trained by the platform and deployed to SageMaker endpoints; the registry keeps the
        # artifacts and metrics on the code location's volume.
        "models": ModelStoreResource(root=str(settings.model_root)),
        "rejections": RejectionLogResource(base_path=f"s3://{bucket.get_value()}/stages" if bucket.get_value()
                                           else str(settings.stage_root)),
        "io_manager": ArrowParquetIOManager(base_path=f"s3://{bucket.get_value()}/stages" if bucket.get_value()
                                            else str(settings.stage_root)),
        "dbt": dbt_resource("prod"),
        "engagement": DynamoDbEngagementStore(table_name=dg.EnvVar("ENGAGE_ENGAGEMENT_TABLE"),
                                              region_name=dg.EnvVar("AWS_REGION")),
        "alerts": SnsAlertSink(topic_arn=dg.EnvVar("ENGAGE_ALERT_TOPIC_ARN"), region_name=dg.EnvVar("AWS_REGION")),
        **delivery,
    }


def delivery_resources(settings: Settings, local: bool) -> dict[str, Any]:
    """Delivery: the ledger and contact-pressure settings, and the e-mail / SMS / push channels (phone and in-app go
    through `engagement`).  Locally: SMTP to the capture server (`make smtp`) and outboxes under ENGAGE_HOME."""
    from engage_assets.delivery.assets import ContactPressureResource, DeliveryLedgerResource
    from engage_assets.delivery.smtp_capture import DEFAULT_PORT
    from resources import channels

    from engage_assets.delivery.conditions import CustomerState

    from engage_assets.delivery.refunds import RefundLedgerResource

    # Production: the ledgers are DynamoDB tables (run workers on several machines share them); locally SQLite files.
    ledger = (DeliveryLedgerResource(path=str(settings.ledger_path)) if local else
              DeliveryLedgerResource(path=str(settings.ledger_path), dynamodb_table=dg.EnvVar("ENGAGE_DELIVERY_TABLE"),
                                     region_name=dg.EnvVar("AWS_REGION")))
    refunds = (RefundLedgerResource(path=str(settings.refund_ledger_path)) if local else
               RefundLedgerResource(path=str(settings.refund_ledger_path), region_name=dg.EnvVar("AWS_REGION"),
                                    dynamodb_table=dg.EnvVar("ENGAGE_REFUND_TABLE")))
    common = {"delivery_ledger": ledger,
              "refund_ledger": refunds,
              "contact_pressure": ContactPressureResource()}
    if local:
        from resources.warehouse import DuckDBWarehouse

        common["customer_state"] = CustomerState(warehouse=DuckDBWarehouse(path=str(settings.warehouse_path)),
                                                 refund_ledger_path=str(settings.refund_ledger_path))
    if local:
        outbox = str(settings.home / "outbox")
        return common | {
            "email_channel": channels.SmtpEmailChannel(port=int(os.environ.get("ENGAGE_SMTP_PORT", DEFAULT_PORT)), capture_dir=str(settings.home / "mail")),
            "sms_channel": channels.OutboxSmsChannel(root=outbox),
            "push_channel": channels.OutboxPushChannel(root=outbox),
        }
    region = dg.EnvVar("AWS_REGION")
    return common | {
        "email_channel": channels.SesEmailChannel(region_name=region, from_address=dg.EnvVar("ENGAGE_EMAIL_FROM"),
                                                  configuration_set=dg.EnvVar("ENGAGE_SES_CONFIGURATION_SET")),
        "sms_channel": channels.SnsSmsChannel(region_name=region),
        "push_channel": channels.SnsPushChannel(region_name=region, topic_arn=dg.EnvVar("ENGAGE_PUSH_TOPIC_ARN")),
    }


def build_resources(settings: Settings) -> dict[str, Any]:
    return local_resources(settings) if settings.env == "local" else prod_resources(settings)
