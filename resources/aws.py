"""AWS clients for every production resource: one configuration (named as in dagster-aws), botocore's retries."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field


class AwsClientConfig(dg.ConfigurableResource):
    """boto3 client settings, named as in dagster-aws's `ResourceWithBoto3Configuration`.

    Not that class itself: importing dagster_aws costs about two seconds (it loads its components), paid by
    every local run process that imports this module without using AWS.
    """

    region_name: str | None = Field(default=None, description="AWS region.")
    endpoint_url: str | None = Field(default=None, description="Custom endpoint (tests: a moto server).")
    profile_name: str | None = Field(default=None, description="Shared-credentials profile.")
    aws_access_key_id: str | None = Field(default=None, description="Access key id (use dg.EnvVar).")
    aws_secret_access_key: str | None = Field(default=None, description="Secret access key (use dg.EnvVar).")
    aws_session_token: str | None = Field(default=None, description="Session token (use dg.EnvVar).")
    max_attempts: int = Field(default=5, description="boto3 retry attempts (standard retry mode).")

    def aws_client(self, service: str) -> Any:
        """A boto3 client for `service` with these settings."""
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=self.profile_name)
        return session.client(
            service,
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=Config(retries={"max_attempts": self.max_attempts, "mode": "standard"}),
        )
