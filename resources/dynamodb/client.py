"""DynamoDB clients: one boto3 session per process, clients with botocore's standard retries, error codes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import PrivateAttr

CONDITION_FAILED = "ConditionalCheckFailedException"
"""The error code of a write whose ConditionExpression did not hold."""

RETRYABLE_CANCELLATIONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
"""Cancellation reasons of a TransactWriteItems that a later attempt may get past (botocore does not retry them)."""

DEFAULT_MAX_ATTEMPTS = 10

_session_lock = threading.Lock()
_shared_session: boto3.session.Session | None = None


def shared_session() -> boto3.session.Session:
    """The process's boto3 session.  A new session re-parses the service models (~0.3 s), so every DynamoDB client
    comes from this one; clients are thread-safe, sessions are not, hence the lock around client creation."""
    global _shared_session
    with _session_lock:
        if _shared_session is None:
            _shared_session = boto3.session.Session()
        return _shared_session


def dynamodb_client(
    region_name: str | None = None, endpoint_url: str | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> Any:
    """A low-level DynamoDB client from the shared session; botocore retries throttling and 5xx errors itself
    (standard mode; `max_attempts` as botocore's retries config reads it: retries after the first call)."""
    session = shared_session()
    with _session_lock:  # Session.client touches the session's loaders and caches: not thread-safe
        return session.client(
            "dynamodb",
            region_name=region_name,
            endpoint_url=endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": max_attempts}),
        )


class LazyClient:
    """A client made on first use (constructing a store or ledger needs no AWS access), once, thread-safely."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The client, created by the factory on the first call."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
        return self._client


def error_code(err: ClientError) -> str:
    """The service's error code of a failed call ("" when it has none)."""
    return str(err.response.get("Error", {}).get("Code", ""))


def conditional_write(call: Callable[..., dict[str, Any]], **request: Any) -> dict[str, Any] | None:
    """Run a conditional PutItem/UpdateItem/DeleteItem (`call` is the client's method): its response, or None when
    its condition did not hold.  Any other error propagates."""
    try:
        return call(**request)
    except ClientError as err:
        if error_code(err) == CONDITION_FAILED:
            return None
        raise


def put_if_absent(client: Any, table_name: str, item: dict[str, Any]) -> bool:
    """PutItem only where no item has this key yet (attribute_not_exists(pk)); False if one exists."""
    return (
        conditional_write(
            client.put_item, TableName=table_name, Item=item, ConditionExpression="attribute_not_exists(pk)"
        )
        is not None
    )


class DynamoDbTableResource(dg.ConfigurableResource):
    """A resource kept in one DynamoDB table: its name, region and endpoint, and a client made on first use."""

    table_name: str
    region_name: str | None = None
    endpoint_url: str | None = None  # tests: a moto server
    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        """The boto3 client (made on first use)."""
        if self._client is None:
            self._client = dynamodb_client(self.region_name, self.endpoint_url)
        return self._client
