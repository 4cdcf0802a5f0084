"""Deploying a promoted model version where scoring reads it: the `ModelDeployResource` interface and the local one.

Locally scoring loads the registry's promoted artifact in process, so promotion is the deployment (`deploy` says
so and does nothing).  In production `sagemaker_deploy.SageMakerModelDeployResource` puts the version behind the
model's SageMaker endpoint; `SageMakerScoringResource` refuses an endpoint that serves another version.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import dagster as dg

from engage_assets.domain.models import ModelRef

VERSION_TAG = "engage:model-version"  # on the SageMaker model and endpoint config: the registry version they serve
MODEL_TAG = "engage:model-id"


class ModelDeployResource(dg.ConfigurableResource, ABC):
    """Makes a promoted version the one scoring uses."""

    @abstractmethod
    def deploy(self, model: ModelRef) -> dict[str, str]:
        """Deploy `model` (idempotent); what was done, for the asset's metadata."""


class LocalModelDeployResource(ModelDeployResource):
    """In-process scoring reads the registry's current version: nothing to deploy."""

    def deploy(self, model: ModelRef) -> dict[str, str]:
        """Nothing to do: the registry's current.json is what local scoring loads."""
        return {"target": "in-process", "version": model.version}
