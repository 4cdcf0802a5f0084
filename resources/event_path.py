"""The environment's resources that the reactive programs' event path uses: the event queue and its batch files, the
dedup claims and cart state, the candidate store, the delivery ledger, the warehouse, scoring and the model registry,
and the platform's history.  `resources.by_env` builds the whole deployment's from these (one wiring); the event
path's own code location (`engage_assets.reactive_location`) builds only these (`event_path_resources`).

Each production class is imported where the production environment selects it: a decision run starts a process that
imports this module, and boto3, Snowflake's and SageMaker's clients cost a few hundred ms it should not pay locally.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from engage_assets.settings import Settings
from resources.cart_state.base import CartStateStore
from resources.cart_state.sqlite import SqliteCartState
from resources.dedup.base import DedupStore
from resources.dedup.sqlite import SqliteDedupStore
from resources.delivery_ledger.resource import DeliveryLedgerResource, SqliteDeliveryLedgerResource
from resources.engagement.base import EngagementStore
from resources.engagement.sqlite import SqliteEngagementStore
from resources.event_batches import EventBatchStore
from resources.events.base import EventSource
from resources.events.local import LocalEventQueue
from resources.exports.base import ExportResource
from resources.exports.local import LocalParquetExports
from resources.scoring.local import LocalScoringResource
from resources.staging import ModelStoreResource
from resources.store.base import CandidateStore
from resources.store.sqlite import SqliteCandidateStore
from resources.warehouse.base import WarehouseResource
from resources.warehouse.duckdb import DuckDBWarehouse

# Where the platform's own history lives: ENGAGE_HOME/history locally, s3://<bucket>/history in production; the dbt
# source `platform` (dbt_project/models/staging/_sources.yml) reads `<root>/offers_*` and `<root>/contacts_*`.
HISTORY_FOLDER = "history"


def snowflake_warehouse() -> WarehouseResource:
    """Snowflake, every credential from the environment when a run starts (dagster-snowflake's resource fields)."""
    from resources.warehouse.snowflake import SnowflakeWarehouse

    return SnowflakeWarehouse(
        account=dg.EnvVar("SNOWFLAKE_ACCOUNT"),
        user=dg.EnvVar("SNOWFLAKE_USER"),
        password=dg.EnvVar("SNOWFLAKE_PASSWORD"),
        role=dg.EnvVar("SNOWFLAKE_ROLE"),
        warehouse=dg.EnvVar("SNOWFLAKE_WAREHOUSE"),
        database=dg.EnvVar("SNOWFLAKE_DATABASE"),
        schema=dg.EnvVar("SNOWFLAKE_SCHEMA"),
    )


def serving_stores(settings: Settings) -> tuple[CandidateStore, EngagementStore]:
    """The candidate and engagement stores the environment selects (the serving API and the programs share them)."""
    if settings.env == "local":
        return (
            SqliteCandidateStore(path=str(settings.store_path)),
            SqliteEngagementStore(path=str(settings.engagement_path)),
        )
    from resources.engagement.dynamodb import DynamoDbEngagementStore
    from resources.store.dynamodb import DynamoDbCandidateStore

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
    from resources.delivery_ledger.resource import DynamoDbDeliveryLedgerResource

    return DynamoDbDeliveryLedgerResource(
        table_name=settings.required("delivery_table"), region_name=settings.required("aws_region")
    )


def platform_history(settings: Settings) -> ExportResource:
    """The platform's own offers and contacts, which dbt's `platform` source reads (never registered as views: the
    history is read through `marts.offer_history` / `marts.contact_history`)."""
    if settings.env == "local":
        return LocalParquetExports(
            root=str(settings.home / HISTORY_FOLDER), warehouse_path=str(settings.warehouse_path)
        )
    from resources.exports.s3 import S3ParquetExports

    return S3ParquetExports(
        bucket=settings.required("s3_bucket"),
        prefix=HISTORY_FOLDER,
        glue_database=settings.required("glue_database"),
        region_name=settings.required("aws_region"),
    )


def event_source(settings: Settings) -> EventSource:
    """The reactive programs' event source: the local queue file, or the SQS queue an EventBridge rule feeds."""
    if settings.env == "local":
        return LocalEventQueue(path=str(settings.events_path))
    from resources.events.sqs import SqsEventSource

    return SqsEventSource(
        queue_url=settings.required("cart_queue_url"),
        dlq_url=settings.required("cart_dlq_url"),
        region_name=settings.required("aws_region"),
    )


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
    from resources.cart_state.dynamodb import DynamoDbCartState
    from resources.dedup.dynamodb import DynamoDbDedupStore

    table, region = settings.required("reactive_table"), settings.required("aws_region")
    return DynamoDbDedupStore(table_name=table, region_name=region), DynamoDbCartState(
        table_name=table, region_name=region
    )


def scoring_resource(settings: Settings) -> Any:
    """In-process scoring with the platform's artifacts, or the SageMaker endpoints."""
    if settings.env == "local":
        return LocalScoringResource()
    from resources.scoring.sagemaker import SageMakerScoringResource

    return SageMakerScoringResource(region_name=settings.required("aws_region"))


def reactive_resources(settings: Settings) -> dict[str, Any]:
    """What the reactive decision path (`engage_assets.reactive`) reads and writes, for the environment."""
    candidates, _ = serving_stores(settings)
    dedup, cart_state = reactive_state(settings)
    local = settings.env == "local"
    return {
        "warehouse": DuckDBWarehouse(path=str(settings.warehouse_path)) if local else snowflake_warehouse(),
        "scoring": scoring_resource(settings),
        "models": ModelStoreResource(root=str(settings.model_root)),
        "store": candidates,
        "delivery_ledger": delivery_ledger(settings),
        "dedup": dedup,
        "cart_state": cart_state,
    }


def event_path_resources(settings: Settings) -> dict[str, Any]:
    """The event path's code location's resources: the decision stages' (`reactive_resources`, the history they
    record) and the cart-event sensor's (`event_resources`)."""
    return {**reactive_resources(settings), **event_resources(settings), "platform_history": platform_history(settings)}
