"""`DynamoDbTable`: one single-table design's plumbing (client, creation, paged queries, consistent batch reads,
conditional updates, transactions), the base of the DynamoDB ledgers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from resources.dynamodb.client import DEFAULT_MAX_ATTEMPTS, LazyClient, conditional_write, dynamodb_client
from resources.dynamodb.codec import plain_item
from resources.dynamodb.expressions import Update, create_table
from resources.dynamodb.operations import (
    TRANSACTION_POLICY,
    RetryPolicy,
    batch_get,
    parallel_map,
    query_items,
    transact_write,
)

T = TypeVar("T")
R = TypeVar("R")


class DynamoDbTable:
    """One DynamoDB table keyed (pk, sk) and its calls.  The client is made on first use and shared by threads, as
    boto3 clients may be."""

    def __init__(
        self,
        table_name: str,
        client_factory: Callable[[], Any] | None = None,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        write_concurrency: int = 8,
        conflict_retries: int = 5,
    ):
        """`max_attempts`: botocore's attempts per call (throttling, 5xx) and BatchGetItem calls per chunk;
        `write_concurrency`: writes in flight at once; `conflict_retries`: further attempts of a transaction
        cancelled by a conflict with another."""
        self.table_name = table_name
        self.region_name = region_name
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        self.write_concurrency = write_concurrency
        self.conflict_retries = conflict_retries
        self._client = LazyClient(
            client_factory or (lambda: dynamodb_client(self.region_name, self.endpoint_url, self.max_attempts))
        )

    def client(self) -> Any:
        """The boto3 DynamoDB client (made on first use)."""
        return self._client.get()

    def close(self) -> None:
        """Nothing to close (the boto3 client holds a pool); here so SQLite and DynamoDB backends are used alike."""

    def ensure_table(self, attributes: Sequence[str], indexes: Sequence[dict[str, Any]]) -> None:
        """Create the table (pk HASH, sk RANGE; every named key attribute a String; pay per request) with these
        GSIs (`gsi` entries); an existing table is left as is."""
        create_table(
            self.client(),
            self.table_name,
            key_schema=[("pk", "HASH"), ("sk", "RANGE")],
            attributes={a: "S" for a in attributes},
            indexes=indexes,
        )

    def parallel(self, fn: Callable[[T], R], jobs: Sequence[T]) -> list[R]:
        """`fn` over `jobs`, `write_concurrency` at a time."""
        return parallel_map(fn, jobs, self.write_concurrency)

    def query_items(self, **request: Any) -> Iterator[dict[str, Any]]:
        """Every raw item of a Query on this table (or one of its indexes), page after page."""
        return query_items(self.client(), TableName=self.table_name, **request)

    def get_items(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The raw items of these distinct keys that exist (BatchGetItem, strongly consistent)."""
        policy = RetryPolicy(max_attempts=self.max_attempts, base_s=0.05, max_s=2.0)
        return batch_get(self.client(), self.table_name, keys, consistent=True, policy=policy)

    def update_item(self, u: Update, returns: bool = False) -> dict[str, Any] | None:
        """A conditional UpdateItem: None when the condition failed, else the item after it (plain values) if
        `returns`, else {}."""
        response = conditional_write(
            self.client().update_item, **u.request(self.table_name), ReturnValues="ALL_NEW" if returns else "NONE"
        )
        if response is None:
            return None
        return plain_item(response["Attributes"]) if returns else {}

    def transact_updates(self, updates: list[Update], attempts: int | None = None) -> list[str] | None:
        """TransactWriteItems of conditional updates: None when it committed, else each item's cancellation code;
        conflicts retried (`attempts` in all, default 1 + conflict_retries)."""
        policy = RetryPolicy(
            max_attempts=attempts or self.conflict_retries + 1,
            base_s=TRANSACTION_POLICY.base_s,
            max_s=TRANSACTION_POLICY.max_s,
        )
        return transact_write(self.client(), [{"Update": u.request(self.table_name)} for u in updates], policy)
