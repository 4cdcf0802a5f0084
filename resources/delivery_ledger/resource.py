"""The delivery ledger as a Dagster resource: every program, run and sensor shares it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from resources.delivery_ledger.sqlite import DeliveryLedger

if TYPE_CHECKING:
    from resources.delivery_ledger.dynamodb import DynamoDbDeliveryLedger


class DeliveryLedgerResource(dg.ConfigurableResource):
    """The delivery ledger shared by every program, run and sensor: SQLite (WAL) at `path`, or, when
    `dynamodb_table` is set (production: run workers on several machines), that DynamoDB table
    (`ledger_dynamodb.DynamoDbDeliveryLedger`; `path` is then unused)."""

    path: str
    busy_timeout_ms: int = 60_000
    dynamodb_table: str | None = Field(default=None, description="DynamoDB table of the ledger (production).")
    region_name: str | None = Field(default=None, description="AWS region of `dynamodb_table`.")
    endpoint_url: str | None = Field(default=None, description="Custom DynamoDB endpoint (tests: a moto server).")

    def ledger(self) -> DeliveryLedger | DynamoDbDeliveryLedger:
        if self.dynamodb_table:
            from resources.delivery_ledger.dynamodb import DynamoDbDeliveryLedger  # boto3 only where used

            return DynamoDbDeliveryLedger(
                self.dynamodb_table, region_name=self.region_name, endpoint_url=self.endpoint_url
            )
        return DeliveryLedger(self.path, self.busy_timeout_ms)
