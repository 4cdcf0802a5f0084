"""The refund ledger as a Dagster resource.  One interface, two classes: SQLite (WAL) on this machine, or one
DynamoDB table (production: run workers on several machines issue at once)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import dagster as dg
from pydantic import Field

from resources.refund_ledger.base import RefundLedgerBackend
from resources.refund_ledger.dynamodb import DynamoDbRefundLedger
from resources.refund_ledger.sqlite import RefundLedger


class RefundLedgerResource(dg.ConfigurableResource, ABC):
    """Where refunds, credits and discount codes are recorded."""

    @abstractmethod
    def ledger(self) -> RefundLedgerBackend:
        """A handle on the ledger (cheap: open one per run)."""


class SqliteRefundLedgerResource(RefundLedgerResource):
    """The ledger in a SQLite file (WAL) at `path` (`Settings.refund_ledger_path`): the embedded default."""

    path: str = Field(description="The ledger's SQLite file.")
    busy_timeout_ms: int = Field(default=60_000, description="How long a writer waits for the write lock.")

    def ledger(self) -> RefundLedger:
        """The SQLite ledger at `path`."""
        return RefundLedger(self.path, self.busy_timeout_ms)


class DynamoDbRefundLedgerResource(RefundLedgerResource):
    """The ledger in one DynamoDB table (`resources.refund_ledger.dynamodb`): production."""

    table_name: str = Field(description="DynamoDB table of the refund ledger.")
    region_name: str | None = Field(default=None, description="AWS region of the table.")
    endpoint_url: str | None = Field(default=None, description="Custom DynamoDB endpoint (tests: a moto server).")

    def ledger(self) -> DynamoDbRefundLedger:
        """The DynamoDB ledger on `table_name`."""
        return DynamoDbRefundLedger(self.table_name, region_name=self.region_name, endpoint_url=self.endpoint_url)

    def create_table(self) -> None:
        """Create the ledger's table and its index (idempotent)."""
        self.ledger().create_table()
