"""DynamoDB calls that take more than one request: paging, batch writes and reads with their unprocessed parts
retried, transactions retried past conflicts.

Retries: botocore retries throttled and failed calls itself (`dynamodb_client`'s standard mode).  What it cannot
retry is a call that succeeded in part (BatchWriteItem's UnprocessedItems, BatchGetItem's UnprocessedKeys) or a
transaction cancelled by a conflict with another one; those are retried here with `tenacity`, capped exponential
backoff with full jitter (spreads concurrent writers instead of synchronising them), a bounded number of attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_random_exponential

from resources.dynamodb.client import RETRYABLE_CANCELLATIONS, error_code

WRITE_BATCH = 25  # BatchWriteItem's maximum
GET_BATCH = 100  # BatchGetItem's maximum

T = TypeVar("T")
R = TypeVar("R")


class UnprocessedError(RuntimeError):
    """A batch call still left items or keys unprocessed after its bounded attempts (throttled); no message names a
    key (keys hold customer ids)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and full-jitter backoff: before attempt k+1 a random wait in [0, min(max_s, base_s * 2^(k-1))]."""

    max_attempts: int = 8
    base_s: float = 0.05
    max_s: float = 5.0

    def retrying(self, retry_when: Callable[[Any], bool]) -> Retrying:
        """A tenacity Retrying that calls again while `retry_when(result)` and attempts are left, then returns the
        last result (exceptions are not retried: botocore has retried those already)."""
        return Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=self.base_s, max=self.max_s),
            retry=retry_if_result(retry_when),
            retry_error_callback=_last_result,
        )


TRANSACTION_POLICY = RetryPolicy(max_attempts=6, base_s=0.02, max_s=1.0)


def _last_result(state: RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()


def parallel_map(fn: Callable[[T], R], jobs: Sequence[T], concurrency: int) -> list[R]:
    """`fn` over `jobs`, `concurrency` at a time (boto3 clients are thread-safe), results in order."""
    if len(jobs) <= 1 or concurrency <= 1:
        return [fn(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(jobs))) as pool:
        return list(pool.map(fn, jobs))


def query_items(client: Any, **request: Any) -> Iterator[dict[str, Any]]:
    """Every raw item of a Query, page after page (boto3's paginator follows LastEvaluatedKey; a given `Limit`
    is the page size, a given `ExclusiveStartKey` where the first page starts)."""
    for page in client.get_paginator("query").paginate(**request):
        yield from page.get("Items", [])


def scan_items(client: Any, **request: Any) -> Iterator[dict[str, Any]]:
    """Every raw item of a Scan, page after page."""
    for page in client.get_paginator("scan").paginate(**request):
        yield from page.get("Items", [])


def query_count(client: Any, **request: Any) -> int:
    """Select=COUNT over every page of a Query: how many items match, none transferred."""
    return sum(page.get("Count", 0) for page in client.get_paginator("query").paginate(Select="COUNT", **request))


def query_pages(client: Any, page_size: int, **request: Any) -> Iterator[list[dict[str, Any]]]:
    """A Query's items in pages of exactly `page_size` (the last one smaller), keyset-paged: each request asks for
    what the page still lacks (a response stops at 1 MB), and the next page resumes after the last key of this
    one only when the caller asks for it, so memory stays one page and the caller's changes in between count."""
    start: dict[str, Any] | None = None
    while True:
        page: list[dict[str, Any]] = []
        while len(page) < page_size:
            kwargs = dict(request, Limit=page_size - len(page))
            if start is not None:
                kwargs["ExclusiveStartKey"] = start
            response = client.query(**kwargs)
            page += response.get("Items", [])
            start = response.get("LastEvaluatedKey")
            if start is None:
                break
        if page:
            yield page
        if start is None:
            return


def batch_write(client: Any, table: str, requests: list[dict[str, Any]], policy: RetryPolicy = RetryPolicy()) -> int:
    """One BatchWriteItem batch (at most WRITE_BATCH requests) to completion, UnprocessedItems sent again; returns
    how many retry calls it took.  Raises UnprocessedError after `policy.max_attempts` calls."""
    pending = requests
    calls = 0

    def send() -> list[dict[str, Any]]:
        nonlocal pending, calls
        calls += 1
        response = client.batch_write_item(RequestItems={table: pending})
        pending = response.get("UnprocessedItems", {}).get(table, [])
        return pending

    if policy.retrying(bool)(send):
        raise UnprocessedError(
            f"BatchWriteItem to {table}: {len(pending)} of {len(requests)} requests still unprocessed after "
            f"{policy.max_attempts} attempts (throttled?); re-running is safe"
        )
    return calls - 1


def write_all(
    client: Any, table: str, requests: list[dict[str, Any]], policy: RetryPolicy = RetryPolicy(), concurrency: int = 1
) -> tuple[int, int]:
    """All requests in batches of exactly WRITE_BATCH (the last one smaller), `concurrency` batches at once;
    returns (batches, retry calls)."""
    batches = [requests[i : i + WRITE_BATCH] for i in range(0, len(requests), WRITE_BATCH)]
    retries = parallel_map(lambda b: batch_write(client, table, b, policy), batches, concurrency)
    return len(batches), sum(retries)


def batch_get(
    client: Any,
    table: str,
    keys: list[dict[str, Any]],
    *,
    consistent: bool = False,
    projection: str | None = None,
    names: dict[str, str] | None = None,
    policy: RetryPolicy = RetryPolicy(),
    concurrency: int = 1,
) -> list[dict[str, Any]]:
    """BatchGetItem for any number of distinct keys (GET_BATCH a call, `concurrency` calls at once), UnprocessedKeys
    asked again; the items found, in no particular order.  Raises UnprocessedError after `policy.max_attempts`."""
    spec: dict[str, Any] = {"ConsistentRead": True} if consistent else {}
    if projection is not None:
        spec["ProjectionExpression"] = projection
    if names:
        spec["ExpressionAttributeNames"] = names

    def one(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {table: {"Keys": chunk, **spec}}

        def call() -> bool:
            nonlocal request
            response = client.batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(table, []))
            request = response.get("UnprocessedKeys") or {}
            return bool(request.get(table, {}).get("Keys"))

        if policy.retrying(bool)(call):
            raise UnprocessedError(
                f"BatchGetItem on {table}: keys still unprocessed after {policy.max_attempts} attempts"
            )
        return items

    chunks = [keys[i : i + GET_BATCH] for i in range(0, len(keys), GET_BATCH)]
    return [item for items in parallel_map(one, chunks, concurrency) for item in items]


def cancellation_codes(err: ClientError, items: int) -> list[str]:
    """Each item's cancellation code of a cancelled transaction ("None" where its condition held)."""
    codes = [str(r.get("Code", "None")) for r in err.response.get("CancellationReasons", [])]
    return codes or ["Unknown"] * items


def _conflicted(codes: list[str] | None) -> bool:
    """Worth another attempt: cancelled by a conflict or throttling, and no condition failed (that is an answer)."""
    return codes is not None and "ConditionalCheckFailed" not in codes and bool(RETRYABLE_CANCELLATIONS & set(codes))


def transact_write(
    client: Any, items: list[dict[str, Any]], policy: RetryPolicy = TRANSACTION_POLICY
) -> list[str] | None:
    """TransactWriteItems: None when it committed, else each item's cancellation code.  botocore does not retry a
    cancelled transaction; one cancelled by a conflict with another in-flight transaction on the same item, or by
    throttling, is tried again here (the conditions are evaluated again), `policy.max_attempts` times in all."""

    def attempt() -> list[str] | None:
        try:
            client.transact_write_items(TransactItems=items)
            return None
        except ClientError as err:
            if error_code(err) != "TransactionCanceledException":
                raise
            return cancellation_codes(err, len(items))

    result: list[str] | None = policy.retrying(_conflicted)(attempt)
    return result
