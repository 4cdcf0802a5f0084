"""uvicorn entry point: `uvicorn engage_assets.serving.server:app_from_settings --factory` (what `make serve` runs).

The stores and the delivery ledger are the ones `resources.by_env` selects for the environment (SQLite under
ENGAGE_HOME locally; DynamoDB tables in production); GDPR deletions also clear the customer's touches in the ledger.
Locally, `POST /v1/events` sends to the reactive programs' event queue (`event_source`, the SQLite file the sensor
drains); in production producers publish to EventBridge, whose rule feeds the SQS queue, and the route answers 503.
The outcome webhooks record into the environment's outcome store and look touches up in the delivery ledger; the SES
one accepts the SNS topics ENGAGE_OUTCOME_TOPIC_ARNS names (unset: it answers 503).  A GDPR deletion also removes the
customer's outcomes and opt-outs.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from engage_assets.domain.config import load_programs
from engage_assets.serving.app import create_app
from engage_assets.serving.logs import configure as configure_logging
from engage_assets.serving.sns import SnsVerifier
from engage_assets.serving.webhooks import Webhooks
from engage_assets.settings import get_settings
from resources.by_env import delivery_ledger, event_source, outcome_store, serving_stores


def app_from_settings() -> FastAPI:
    """The app over the stores the environment selects, knowing the configured programs.  A GDPR deletion also
    removes the customer's touches from the delivery ledger (planned ones must never go out); event ingest locally."""
    configure_logging(logging.INFO)  # request logs written in batches (engage_assets.serving.logs)
    settings = get_settings()
    candidates, engagement = serving_stores(settings)
    programs = [p.programId for p in load_programs(settings.program_configs)]
    ledger = delivery_ledger(settings).ledger()
    events = event_source(settings) if settings.env == "local" else None
    outcomes = outcome_store(settings)
    topics = frozenset(t.strip() for t in (settings.outcome_topic_arns or "").split(",") if t.strip())
    webhooks = Webhooks(outcomes, ledger, SnsVerifier(allowed_topics=topics) if topics else None)
    erasers = {"deliveryTouches": ledger.erase_customer, "outcomes": lambda c: outcomes.erase_customers([c])}
    return create_app(candidates, engagement, programs=programs, erasers=erasers, events=events, webhooks=webhooks)
