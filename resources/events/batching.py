"""Batch calls of the AWS event services (SQS SendMessageBatch/DeleteMessageBatch, EventBridge PutEvents): packing
entries into requests, and retrying the entries a call failed in part.

botocore retries a throttled or failed call itself (`AwsClientConfig`'s standard mode); what it cannot retry is a
call that succeeded for some entries only.  `settle` sends the failed entries again while the service says the
failure was its own (not the sender's), with `resources.dynamodb.RetryPolicy` (tenacity, full jitter).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from resources.dynamodb import RetryPolicy

T = TypeVar("T")
R = TypeVar("R")

ENTRY_POLICY = RetryPolicy(max_attempts=5, base_s=0.05, max_s=2.0)
"""Attempts for the entries a batch call failed in part (server-side faults, throttling)."""

Indexed = list[tuple[int, T]]
"""Entries with their index in the caller's list (a batch entry's Id)."""


def pack(items: Sequence[T], max_count: int, max_bytes: float, size_of: Callable[[T], int]) -> list[Indexed[T]]:
    """Consecutive items as batches of at most `max_count` entries and `max_bytes` in all (an item larger than
    `max_bytes` goes alone, for the service to judge)."""
    batches: list[Indexed[T]] = []
    batch: Indexed[T] = []
    size = 0.0
    for i, item in enumerate(items):
        n = size_of(item)
        if batch and (len(batch) == max_count or size + n > max_bytes):
            batches.append(batch)
            batch, size = [], 0
        batch.append((i, item))
        size += n
    if batch:
        batches.append(batch)
    return batches


def settle(
    call: Callable[[Indexed[T]], dict[int, tuple[R, bool]]], batch: Indexed[T], policy: RetryPolicy = ENTRY_POLICY
) -> dict[int, R]:
    """Run one batch call to completion: `call` answers, per entry index, its result and whether a failure may be
    retried; retryable entries are sent again (alone) until none is left or the attempts run out.  Returns the last
    result of every entry."""
    results: dict[int, R] = {}
    pending = batch

    def attempt() -> Indexed[T]:
        nonlocal pending
        answered = call(pending)
        results.update({i: result for i, (result, _) in answered.items()})
        pending = [(i, item) for i, item in pending if answered[i][1]]
        return pending

    policy.retrying(bool)(attempt)
    return results
