"""A promoted model is deployed to its SageMaker endpoint, and scoring refuses an endpoint serving another version
(#11, item 7), against a moto server (the control plane and S3 over HTTP) and the SageMaker runtime stand-in.

moto 5.2.5 implements CreateModel, CreateEndpointConfig, CreateEndpoint, DescribeEndpoint(Config) and ListTags but
not UpdateEndpoint; `update_endpoint` below adds it to the moto server's SageMaker responses the way AWS behaves (the
endpoint takes the new config's name and variants), so the deployer's update call still goes over the wire.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse

from engage_assets.demo.sagemaker_endpoint import serve
from engage_assets.domain.models import ModelRegistry, train_model
from resources.scoring.base import ScoringError
from resources.scoring.deploy import VERSION_TAG
from resources.scoring.sagemaker import SageMakerScoringResource, forget_verified
from resources.scoring.sagemaker_deploy import SageMakerModelDeployResource, deployed_name
from tests.test_models import CHURN_FEATURES, churn_history

PROGRAM, MODEL, ENDPOINT = "churn-prevention", "churn-risk-v6", "deploy-test-churn-risk"
BUCKET = "engage-model-deploy-test"


def update_endpoint(self: SageMakerResponse) -> str:
    """UpdateEndpoint as AWS does it (moto lacks it): the endpoint now serves the new config."""
    backend = sagemaker_backends[self.current_account][self.region]
    name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
    endpoint = backend.endpoints[name]
    config = backend.describe_endpoint_config(config_name)
    endpoint.endpoint_config_name = config_name
    endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
    return json.dumps({"EndpointArn": endpoint.arn})


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    forget_verified()
    return moto_endpoint


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Two promoted versions of the same model in a registry: (registry, first ref, second ref)."""
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    df = churn_history(8_000, seed=9)
    for features in (CHURN_FEATURES[:3], CHURN_FEATURES):
        assert registry.promote_if_improved(train_model(MODEL, PROGRAM, features, df, "churned_90d"))[0]
    first, second = registry.promoted_versions(PROGRAM, MODEL)
    refs = [registry.ref(PROGRAM, MODEL, v, f"sagemaker://{ENDPOINT}") for v in (first, second)]
    return registry, refs[0], refs[1]


def deployer(url: str) -> SageMakerModelDeployResource:
    return SageMakerModelDeployResource(
        artifact_bucket=BUCKET,
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/engage-model:1",
        execution_role_arn="arn:aws:iam::123456789012:role/engage-sagemaker",
        endpoint_url=url,
        s3_endpoint_url=url,
    )


def test_a_promoted_version_is_deployed_and_the_next_one_updates_the_endpoint(aws, versions):
    _, first, second = versions
    sm = boto3.client("sagemaker", endpoint_url=aws, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")

    done = deployer(aws).deploy(first)
    name = deployed_name(ENDPOINT, first.version)
    assert done == {
        "endpoint": ENDPOINT,
        "endpoint_config": name,
        "model_data": f"s3://{BUCKET}/models/{PROGRAM}/{MODEL}/{first.version}/model.tar.gz",
        "action": "created",
    }
    model = sm.describe_model(ModelName=name)
    assert model["PrimaryContainer"]["ModelDataUrl"] == done["model_data"]
    assert model["PrimaryContainer"]["Environment"]["ENGAGE_MODEL_VERSION"] == first.version
    assert s3.head_object(Bucket=BUCKET, Key=done["model_data"].split(BUCKET + "/")[1])["ContentLength"] > 0
    config = sm.describe_endpoint_config(EndpointConfigName=name)
    assert config["ProductionVariants"][0]["ModelName"] == name
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=config["EndpointConfigArn"])["Tags"]}
    assert tags[VERSION_TAG] == first.version
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == name

    assert deployer(aws).deploy(first)["action"] == "unchanged"  # idempotent
    assert deployer(aws).deploy(second)["action"] == "updated"
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == deployed_name(ENDPOINT, second.version)
    assert deployer(aws).deploy(first)["action"] == "updated"  # a rollback re-points it, nothing is re-created


def test_scoring_refuses_an_endpoint_serving_another_version(aws, versions):
    _, first, second = versions
    deployer(aws).deploy(first)
    rows = churn_history(50, seed=2)[CHURN_FEATURES]
    with serve({ENDPOINT: first}) as runtime:
        scoring = SageMakerScoringResource(endpoint_url=runtime.url, control_endpoint_url=aws, max_concurrency=1)
        assert scoring.score(first, rows).shape == (50,)  # the registry's version is the served one
        with pytest.raises(ScoringError, match=f"serves {MODEL}@{first.version}, but the registry's current"):
            scoring.score(second, rows)  # the registry moved on, the endpoint did not: refused before any call
        assert runtime.invocations == 1
    deployer(aws).deploy(second)
    forget_verified()
    with serve({ENDPOINT: second}) as runtime:
        scoring = SageMakerScoringResource(endpoint_url=runtime.url, control_endpoint_url=aws, max_concurrency=1)
        assert scoring.score(second, rows).shape == (50,)
        with pytest.raises(ScoringError, match=f"serves {MODEL}@{second.version}"):
            scoring.score(first, rows)


def test_an_endpoint_without_a_version_tag_or_a_deployment_is_refused(aws, versions):
    _, first, _ = versions
    sm = boto3.client("sagemaker", endpoint_url=aws, region_name="us-east-1")
    scoring = SageMakerScoringResource(endpoint_url=aws, control_endpoint_url=aws)
    rows = churn_history(5, seed=3)[CHURN_FEATURES]
    other = first.__class__(**{**first.__dict__, "endpoint": "sagemaker://never-deployed"})
    with pytest.raises(ScoringError, match="never-deployed: ValidationException"):
        scoring.score(other, rows)
    sm.create_model(ModelName="hand-made", PrimaryContainer={"Image": "x"}, ExecutionRoleArn="arn:aws:iam::1:role/r")
    sm.create_endpoint_config(
        EndpointConfigName="hand-made",
        ProductionVariants=[
            {"VariantName": "a", "ModelName": "hand-made", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName="hand-made", EndpointConfigName="hand-made")
    untagged = first.__class__(**{**first.__dict__, "endpoint": "sagemaker://hand-made"})
    with pytest.raises(ScoringError, match="without the engage:model-version tag"):
        scoring.score(untagged, rows)


def test_deploying_without_an_image_or_role_says_what_to_set(versions):
    _, first, _ = versions
    with pytest.raises(ValueError, match="ENGAGE_SAGEMAKER_IMAGE_URI and ENGAGE_SAGEMAKER_ROLE_ARN"):
        SageMakerModelDeployResource(artifact_bucket=BUCKET).deploy(first)
