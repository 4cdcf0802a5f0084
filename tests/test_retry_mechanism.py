"""Retries through one mechanism, tenacity (issue #13, item 6): the SQLite lock retry and the DynamoDB index wait are
bounded with backoff, and give up with the error (or False) at their deadline."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

from resources.dynamodb.expressions import index_active
from resources.sqlite_wal import retry_locked


def test_a_locked_database_is_retried_until_the_step_succeeds():
    calls = []

    def step() -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")

    retry_locked(step, busy_timeout_ms=2_000)
    assert len(calls) == 3 and calls[2] > calls[1] > calls[0]


def test_a_lock_outlasting_the_busy_timeout_is_raised_at_the_deadline():
    calls = []

    def step() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_locked(step, busy_timeout_ms=200)
    assert 0.2 <= time.monotonic() - t0 < 1.0 and 1 < len(calls) < 40


def test_other_errors_are_not_retried():
    calls = []

    def step() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: x")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_locked(step, busy_timeout_ms=2_000)
    assert len(calls) == 1


class Describe:
    """DescribeTable answering CREATING `creating` times, then ACTIVE."""

    def __init__(self, creating: int):
        self.creating, self.calls = creating, 0

    def describe_table(self, TableName: str) -> dict[str, Any]:  # noqa: N803 - boto3's argument name
        self.calls += 1
        state = "CREATING" if self.calls <= self.creating else "ACTIVE"
        return {"Table": {"GlobalSecondaryIndexes": [{"IndexName": "gsi9", "IndexStatus": state}]}}


def test_the_index_wait_polls_until_active():
    client = Describe(creating=2)
    assert index_active(client, "t", "gsi9", wait_s=10)
    assert client.calls == 3


def test_the_index_wait_gives_up_at_its_deadline():
    client = Describe(creating=10**6)
    t0 = time.monotonic()
    assert not index_active(client, "t", "gsi9", wait_s=0.3)
    assert time.monotonic() - t0 < 2.0 and client.calls < 10
