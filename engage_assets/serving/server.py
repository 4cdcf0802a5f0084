"""uvicorn entry point: `uvicorn engage_assets.serving.server:app_from_settings --factory` (what `make serve` runs).

Local (ENGAGE_ENV=local): the embedded SQLite stores under ENGAGE_HOME.  Production: DynamoDB tables named by
ENGAGE_CANDIDATE_TABLE, ENGAGE_SCORE_CACHE_TABLE and ENGAGE_ENGAGEMENT_TABLE in AWS_REGION, and the delivery ledger
in ENGAGE_DELIVERY_TABLE (GDPR deletions clear the customer's touches there) (read through
dg.EnvVar when the app is built, never at import).
"""
from __future__ import annotations

import logging

import dagster as dg
from fastapi import FastAPI

from engage_assets.config import load_programs
from engage_assets.serving.app import create_app
from engage_assets.serving.logs import configure as configure_logging
from engage_assets.settings import Settings, get_settings, program_config_dir


def serving_stores(settings: Settings) -> tuple[object, object]:
    if settings.env == "local":
        from resources.engagement import SqliteEngagementStore
        from resources.store_sqlite import SqliteCandidateStore

        return (SqliteCandidateStore(path=str(settings.store_path)),
                SqliteEngagementStore(path=str(settings.engagement_path)))
    from resources.engagement import DynamoDbEngagementStore
    from resources.store_dynamodb import DynamoDbCandidateStore

    region = dg.EnvVar("AWS_REGION").get_value()
    return (
        DynamoDbCandidateStore(table_name=dg.EnvVar("ENGAGE_CANDIDATE_TABLE").get_value(),
                               score_cache_table_name=dg.EnvVar("ENGAGE_SCORE_CACHE_TABLE").get_value(),
                               region_name=region),
        DynamoDbEngagementStore(table_name=dg.EnvVar("ENGAGE_ENGAGEMENT_TABLE").get_value(), region_name=region),
    )


def app_from_settings() -> FastAPI:
    """The app over the stores the environment selects, knowing the configured programs.  A GDPR deletion also
    removes the customer's touches from the delivery ledger (planned ones must never go out)."""
    configure_logging(logging.INFO)  # request logs written in batches (engage_assets.serving.logs)
    settings = get_settings()
    candidates, engagement = serving_stores(settings)
    programs = [p.programId for p in load_programs(program_config_dir())]
    ledger = delivery_ledger(settings)
    return create_app(candidates, engagement, programs=programs, erasers={"deliveryTouches": ledger.erase_customer})


def delivery_ledger(settings: Settings) -> object:
    """The delivery ledger the environment selects (the SQLite file locally, the DynamoDB table in production)."""
    from engage_assets.delivery.assets import DeliveryLedgerResource

    if settings.env == "local":
        return DeliveryLedgerResource(path=str(settings.ledger_path)).ledger()
    return DeliveryLedgerResource(path=str(settings.ledger_path),
                                  dynamodb_table=dg.EnvVar("ENGAGE_DELIVERY_TABLE").get_value(),
                                  region_name=dg.EnvVar("AWS_REGION").get_value()).ledger()
