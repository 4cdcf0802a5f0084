"""Production deployment of a promoted model version to its SageMaker endpoint, through boto3.

For version V of a model behind `sagemaker://<endpoint>`:
1. the artifact goes to S3 as `s3://<bucket>/<prefix>/<program>/<model>/<V>/model.tar.gz` (model.joblib and
   metrics.json: what the serving container loads);
2. `CreateModel` `<endpoint>-<V>` (the container image, the artifact, the execution role), tagged with V;
3. `CreateEndpointConfig` `<endpoint>-<V>` (one variant, all traffic), tagged with V (`deploy.VERSION_TAG`);
4. `UpdateEndpoint` to that config, or `CreateEndpoint` when the endpoint does not exist yet.
Every step is skipped when already done, so a re-run (or a rollback to an earlier version) is cheap.  Scoring
reads the endpoint config's tag to refuse an endpoint that serves another version than the registry's.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from engage_assets.domain.models import ModelRef
from resources.scoring.deploy import MODEL_TAG, VERSION_TAG, ModelDeployResource
from resources.scoring.sagemaker import endpoint_name

MAX_NAME = 63  # SageMaker model, endpoint config and endpoint names


def deployed_name(endpoint: str, version: str) -> str:
    """`<endpoint>-<version>`, the endpoint part shortened so the name fits SageMaker's 63 characters."""
    return f"{endpoint[: MAX_NAME - len(version) - 1]}-{version}"


def model_archive(model: ModelRef) -> bytes:
    """model.tar.gz: the artifact and its metrics.json, as SageMaker containers expect under /opt/ml/model."""
    buf = io.BytesIO()
    folder = Path(model.artifact_path).parent
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("model.joblib", "metrics.json"):
            tar.add(folder / name, arcname=name)
    return buf.getvalue()


def _missing(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    return err.get("Code") in ("ValidationException", "ValidationError") and "not find" in err.get("Message", "")


class SageMakerModelDeployResource(ModelDeployResource):
    """Deploys a promoted version behind its endpoint (module docstring)."""

    region_name: str = "us-east-1"
    artifact_bucket: str
    artifact_prefix: str = "models"
    image_uri: str | None = None  # ENGAGE_SAGEMAKER_IMAGE_URI
    execution_role_arn: str | None = None  # ENGAGE_SAGEMAKER_ROLE_ARN
    instance_type: str = "ml.m5.large"
    initial_instance_count: int = 1
    endpoint_url: str | None = None  # tests: a moto server; production: leave unset
    s3_endpoint_url: str | None = None

    def _client(self, service: str, url: str | None) -> Any:
        return boto3.client(service, region_name=self.region_name, endpoint_url=url)

    def _upload(self, s3: Any, model: ModelRef) -> str:
        key = f"{self.artifact_prefix.strip('/')}/{model.program_id}/{model.model_id}/{model.version}/model.tar.gz"
        try:
            s3.head_object(Bucket=self.artifact_bucket, Key=key)
        except ClientError:
            s3.put_object(Bucket=self.artifact_bucket, Key=key, Body=model_archive(model))
        return f"s3://{self.artifact_bucket}/{key}"

    def _tags(self, model: ModelRef) -> list[dict[str, str]]:
        return [{"Key": VERSION_TAG, "Value": model.version}, {"Key": MODEL_TAG, "Value": model.model_id}]

    def _ensure_model(self, sm: Any, name: str, data_url: str, model: ModelRef) -> None:
        try:
            sm.describe_model(ModelName=name)
        except ClientError as exc:
            if not _missing(exc):
                raise
            sm.create_model(
                ModelName=name,
                PrimaryContainer={
                    "Image": self.image_uri,
                    "ModelDataUrl": data_url,
                    "Environment": {"ENGAGE_MODEL_ID": model.model_id, "ENGAGE_MODEL_VERSION": model.version},
                },
                ExecutionRoleArn=self.execution_role_arn,
                Tags=self._tags(model),
            )

    def _ensure_config(self, sm: Any, name: str, model: ModelRef) -> None:
        try:
            sm.describe_endpoint_config(EndpointConfigName=name)
        except ClientError as exc:
            if not _missing(exc):
                raise
            sm.create_endpoint_config(
                EndpointConfigName=name,
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": name,
                        "InitialInstanceCount": self.initial_instance_count,
                        "InstanceType": self.instance_type,
                        "InitialVariantWeight": 1.0,
                    }
                ],
                Tags=self._tags(model),
            )

    def deploy(self, model: ModelRef) -> dict[str, str]:
        """Upload, create the model and its endpoint config, point the endpoint at it (module docstring)."""
        if not (self.image_uri and self.execution_role_arn):
            raise ValueError(
                f"cannot deploy {model.model_id}@{model.version}: set ENGAGE_SAGEMAKER_IMAGE_URI and "
                "ENGAGE_SAGEMAKER_ROLE_ARN (the serving image and the role SageMaker runs it as)"
            )
        endpoint = endpoint_name(model)
        name = deployed_name(endpoint, model.version)
        sm = self._client("sagemaker", self.endpoint_url)
        data_url = self._upload(self._client("s3", self.s3_endpoint_url), model)
        self._ensure_model(sm, name, data_url, model)
        self._ensure_config(sm, name, model)
        try:
            current = sm.describe_endpoint(EndpointName=endpoint)
        except ClientError as exc:
            if not _missing(exc):
                raise
            sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name, Tags=self._tags(model))
            action = "created"
        else:
            if current["EndpointConfigName"] == name:
                action = "unchanged"
            else:
                sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=name)
                action = "updated"
        return {"endpoint": endpoint, "endpoint_config": name, "model_data": data_url, "action": action}
