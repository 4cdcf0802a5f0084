"""The delivery ledger as a Dagster resource: every program, run and sensor shares it.  One interface, two
classes: SQLite (WAL) on this machine, or one DynamoDB table (production: run workers on several machines)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from resources.delivery_ledger.base import DeliveryLedgerBackend
from resources.delivery_ledger.sqlite import DeliveryLedger

if TYPE_CHECKING:  # boto3 (0.1-0.4 s to import) only where the production ledger is opened
    from resources.delivery_ledger.dynamodb import DynamoDbDeliveryLedger


class DeliveryLedgerResource(dg.ConfigurableResource, ABC):
    """The delivery ledger shared by every program, run and sensor."""

    @abstractmethod
    def ledger(self) -> DeliveryLedgerBackend:
        """A handle on the ledger (cheap: open one per run or sensor tick)."""


class SqliteDeliveryLedgerResource(DeliveryLedgerResource):
    """The ledger in a SQLite file (WAL) at `path`: the embedded default."""

    path: str = Field(description="The ledger's SQLite file.")
    busy_timeout_ms: int = Field(default=60_000, description="How long a writer waits for the write lock.")

    def ledger(self) -> DeliveryLedger:
        """The SQLite ledger at `path`."""
        return DeliveryLedger(self.path, self.busy_timeout_ms)


class DynamoDbDeliveryLedgerResource(DeliveryLedgerResource):
    """The ledger in one DynamoDB table (`resources.delivery_ledger.dynamodb`): production."""

    table_name: str = Field(description="DynamoDB table of the ledger.")
    region_name: str | None = Field(default=None, description="AWS region of the table.")
    endpoint_url: str | None = Field(default=None, description="Custom DynamoDB endpoint (tests: a moto server).")

    def ledger(self) -> DynamoDbDeliveryLedger:
        """The DynamoDB ledger on `table_name`."""
        from resources.delivery_ledger.dynamodb import DynamoDbDeliveryLedger

        return DynamoDbDeliveryLedger(self.table_name, region_name=self.region_name, endpoint_url=self.endpoint_url)

    def create_table(self) -> None:
        """Create the ledger's table and its indexes (idempotent)."""
        self.ledger().create_table()
