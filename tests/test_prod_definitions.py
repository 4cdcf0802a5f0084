"""ENGAGE_ENV=prod: the same Definitions load with the production resources (Snowflake, DynamoDB, SES/SNS, S3/Glue,
the DynamoDB delivery ledger), every secret and name read from the environment through dg.EnvVar."""
from __future__ import annotations

import dagster as dg
import pytest

PROD_ENV = {
    "AWS_REGION": "eu-west-1", "ENGAGE_ALERT_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:engage-alerts",
    "ENGAGE_CANDIDATE_TABLE": "engage-candidates", "ENGAGE_SCORE_CACHE_TABLE": "engage-score-cache",
    "ENGAGE_ENGAGEMENT_TABLE": "engage-engagement", "ENGAGE_DELIVERY_TABLE": "engage-delivery",
    "ENGAGE_REFUND_TABLE": "engage-refunds",
    "ENGAGE_EMAIL_FROM": "offers@example.com", "ENGAGE_SES_CONFIGURATION_SET": "engage",
    "ENGAGE_PUSH_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:engage-push", "ENGAGE_GLUE_DATABASE": "engage",
    "ENGAGE_S3_BUCKET": "engage-exports", "SNOWFLAKE_ACCOUNT": "acme-xy12345", "SNOWFLAKE_USER": "engage",
    "SNOWFLAKE_PASSWORD": "not-a-secret", "SNOWFLAKE_ROLE": "ENGAGE", "SNOWFLAKE_WAREHOUSE": "ENGAGE_WH",
    "SNOWFLAKE_DATABASE": "ANALYTICS", "SNOWFLAKE_SCHEMA": "ENGAGE",
}


@pytest.fixture
def prod_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ENGAGE_ENV", "prod")
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    for k, v in PROD_ENV.items():
        monkeypatch.setenv(k, v)


def test_prod_definitions_load_with_production_resources(prod_env):
    from engage_assets.definitions import build_definitions
    from engage_assets.delivery.ledger_dynamodb import DynamoDbDeliveryLedger
    from engage_assets.delivery.refunds_dynamodb import DynamoDbRefundLedger

    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)
    r = defs.resources
    kinds = {k: type(v).__name__ for k, v in r.items()}
    assert kinds["email_channel"] == "SesEmailChannel" and kinds["sms_channel"] == "SnsSmsChannel"
    assert kinds["store"] == "DynamoDbCandidateStore" and kinds["engagement"] == "DynamoDbEngagementStore"
    assert kinds["exports"] == "S3ParquetExports"
    with dg.build_resources({"delivery_ledger": r["delivery_ledger"]}) as initialised:  # EnvVars resolved here
        ledger = initialised.delivery_ledger.ledger()
    assert isinstance(ledger, DynamoDbDeliveryLedger) and ledger.table_name == "engage-delivery"
    with dg.build_resources({"refund_ledger": r["refund_ledger"], "customer_state": r["customer_state"]}) as built:
        refunds, state = built.refund_ledger.ledger(), built.customer_state
    assert isinstance(refunds, DynamoDbRefundLedger) and refunds.table_name == "engage-refunds"
    assert state.refund_ledger is not None and state.refund_ledger.dynamodb_table == "engage-refunds"


def test_without_a_required_variable_prod_fails_naming_it(prod_env, monkeypatch):
    """dg.EnvVar is read when the resource is initialised (a run starts), and the error names the variable."""
    from engage_assets.definitions import build_definitions

    monkeypatch.delenv("SNOWFLAKE_ACCOUNT")
    defs = build_definitions()
    with pytest.raises(Exception, match="SNOWFLAKE_ACCOUNT"):
        with dg.build_resources({"warehouse": defs.resources["warehouse"]}):
            pass
