"""The one DynamoDB library of every DynamoDB implementation (candidate store, engagement store, delivery and refund
ledgers): clients, values, requests, multi-request calls and their retries.

- `client`: one boto3 session per process, `dynamodb_client` (botocore standard retries), `LazyClient`,
  `error_code`, `conditional_write`, `put_if_absent`.
- `codec`: `to_dynamo`/`from_dynamo` (floats as exact Decimals and back), `serialize`/`deserialize`, `plain`,
  `plain_item`, `number`, `sortable_int`/`from_sortable_int` (integers as order-preserving strings).
- `expressions`: `Update` (conditional-update builder), `gsi`, `create_table`, `add_missing_indexes`.
- `operations`: `query_items`/`query_pages`/`query_count`/`scan_items` (paging), `batch_write`/`write_all`
  (UnprocessedItems retried), `batch_get` (UnprocessedKeys retried), `transact_write` (conflicts retried),
  `parallel_map`, `RetryPolicy` (tenacity, full jitter), `UnprocessedError`.
- `table`: `DynamoDbTable`, a single table's plumbing, the base of the ledgers.
"""

from resources.dynamodb.client import (
    CONDITION_FAILED,
    RETRYABLE_CANCELLATIONS,
    DynamoDbTableResource,
    LazyClient,
    conditional_write,
    dynamodb_client,
    error_code,
    put_if_absent,
    shared_session,
)
from resources.dynamodb.codec import (
    deserialize,
    from_dynamo,
    from_sortable_int,
    number,
    plain,
    plain_item,
    serialize,
    sortable_int,
    to_dynamo,
)
from resources.dynamodb.expressions import Update, add_missing_indexes, create_table, gsi
from resources.dynamodb.operations import (
    GET_BATCH,
    TRANSACTION_POLICY,
    WRITE_BATCH,
    RetryPolicy,
    UnprocessedError,
    batch_get,
    batch_write,
    cancellation_codes,
    parallel_map,
    query_count,
    query_items,
    query_pages,
    scan_items,
    transact_write,
    write_all,
)
from resources.dynamodb.table import DynamoDbTable

__all__ = [
    "CONDITION_FAILED",
    "GET_BATCH",
    "RETRYABLE_CANCELLATIONS",
    "TRANSACTION_POLICY",
    "WRITE_BATCH",
    "DynamoDbTable",
    "DynamoDbTableResource",
    "LazyClient",
    "RetryPolicy",
    "UnprocessedError",
    "Update",
    "batch_get",
    "batch_write",
    "cancellation_codes",
    "conditional_write",
    "add_missing_indexes",
    "create_table",
    "deserialize",
    "dynamodb_client",
    "error_code",
    "from_dynamo",
    "from_sortable_int",
    "gsi",
    "number",
    "parallel_map",
    "plain",
    "plain_item",
    "put_if_absent",
    "query_count",
    "query_items",
    "query_pages",
    "scan_items",
    "serialize",
    "shared_session",
    "sortable_int",
    "to_dynamo",
    "transact_write",
    "write_all",
]
