"""ENGAGE_ENV=prod: the same Definitions load with the production resources (Snowflake, DynamoDB, SES/SNS, S3/Glue,
the DynamoDB delivery ledger), every secret and name read from the environment through dg.EnvVar."""

from __future__ import annotations

import dagster as dg
import pytest

PROD_ENV = {
    "AWS_REGION": "eu-west-1",
    "ENGAGE_ALERT_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:engage-alerts",
    "ENGAGE_CANDIDATE_TABLE": "engage-candidates",
    "ENGAGE_SCORE_CACHE_TABLE": "engage-score-cache",
    "ENGAGE_ENGAGEMENT_TABLE": "engage-engagement",
    "ENGAGE_DELIVERY_TABLE": "engage-delivery",
    "ENGAGE_REFUND_TABLE": "engage-refunds",
    "ENGAGE_OUTCOME_TABLE": "engage-outcomes",
    "ENGAGE_EMAIL_FROM": "offers@example.com",
    "ENGAGE_SES_CONFIGURATION_SET": "engage",
    "ENGAGE_PUSH_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:engage-push",
    "ENGAGE_GLUE_DATABASE": "engage",
    "ENGAGE_S3_BUCKET": "engage-exports",
    "ENGAGE_SUPPRESSION_KEY": "a-production-secret-of-32-chars!",
    "ENGAGE_CART_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/engage-cart-events",
    "ENGAGE_CART_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/engage-cart-events-dlq",
    "ENGAGE_REACTIVE_TABLE": "engage-reactive",
    "SNOWFLAKE_ACCOUNT": "acme-xy12345",
    "SNOWFLAKE_USER": "engage",
    "SNOWFLAKE_PASSWORD": "not-a-secret",
    "SNOWFLAKE_ROLE": "ENGAGE",
    "SNOWFLAKE_WAREHOUSE": "ENGAGE_WH",
    "SNOWFLAKE_DATABASE": "ANALYTICS",
    "SNOWFLAKE_SCHEMA": "ENGAGE",
}


@pytest.fixture
def prod_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ENGAGE_ENV", "prod")
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    for k, v in PROD_ENV.items():
        monkeypatch.setenv(k, v)


def test_prod_definitions_load_with_production_resources(prod_env):
    from engage_assets.definitions import build_definitions
    from resources.delivery_ledger.dynamodb import DynamoDbDeliveryLedger
    from resources.refund_ledger.dynamodb import DynamoDbRefundLedger
    from resources.refund_ledger.resource import DynamoDbRefundLedgerResource

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
    assert isinstance(state.refund_ledger, DynamoDbRefundLedgerResource)
    assert state.refund_ledger.table_name == "engage-refunds"


def test_without_a_required_variable_prod_fails_naming_it(prod_env, monkeypatch):
    """dg.EnvVar is read when the resource is initialised (a run starts), and the error names the variable."""
    from engage_assets.definitions import build_definitions

    monkeypatch.delenv("SNOWFLAKE_ACCOUNT")
    defs = build_definitions()
    with pytest.raises(Exception, match="SNOWFLAKE_ACCOUNT"):
        with dg.build_resources({"warehouse": defs.resources["warehouse"]}):
            pass


def test_create_tables_makes_every_production_table_once(prod_env, monkeypatch, moto_endpoint, capsys):
    """`engage create-tables` against a moto server: the candidate, score-cache, engagement, delivery, refund,
    reactive and outcome tables exist with their indexes; a second call changes nothing."""
    import boto3

    from engage_assets.cli import main

    suffix = str(abs(hash(moto_endpoint)) % 10**6)
    names = {k: f"{v}-{suffix}" for k, v in PROD_ENV.items() if k.endswith("_TABLE")}
    for k, v in names.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for _ in range(2):
        with pytest.raises(SystemExit) as done:
            main(["create-tables"])
        assert done.value.code == 0
    assert capsys.readouterr().out.count(": ready") == 12
    ddb = boto3.client("dynamodb", region_name=PROD_ENV["AWS_REGION"], endpoint_url=moto_endpoint)
    for name in names.values():
        table = ddb.describe_table(TableName=name)["Table"]
        assert table["TableStatus"] == "ACTIVE"
    gsis = {
        n: {g["IndexName"] for g in ddb.describe_table(TableName=n)["Table"].get("GlobalSecondaryIndexes", [])}
        for n in names.values()
    }
    assert len(gsis[names["ENGAGE_DELIVERY_TABLE"]]) == 5 and gsis[names["ENGAGE_REFUND_TABLE"]]
    assert len(gsis[names["ENGAGE_CANDIDATE_TABLE"]]) == 5 and gsis[names["ENGAGE_ENGAGEMENT_TABLE"]]
    assert gsis[names["ENGAGE_OUTCOME_TABLE"]] == {"cust", "day"}  # the daily export queries `day`


def test_create_tables_refuses_the_local_environment(monkeypatch, tmp_path):
    from engage_assets.cli import main

    monkeypatch.setenv("ENGAGE_ENV", "local")
    monkeypatch.setenv("ENGAGE_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as done:
        main(["create-tables"])
    assert done.value.code == 2
