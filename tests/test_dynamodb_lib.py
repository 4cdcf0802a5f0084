"""The DynamoDB library (`resources.dynamodb`) on its own: value round-trips, the update builder, paging, and the
retries of what botocore does not retry (unprocessed batch items and keys, conflicting transactions), against the
moto server of conftest.py."""

from __future__ import annotations

import math
import threading
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from resources.dynamodb import (
    DynamoDbTable,
    RetryPolicy,
    UnprocessedError,
    Update,
    batch_get,
    batch_write,
    create_table,
    deserialize,
    dynamodb_client,
    from_dynamo,
    from_sortable_int,
    gsi,
    number,
    plain_item,
    put_if_absent,
    query_count,
    query_pages,
    serialize,
    shared_session,
    sortable_int,
    to_dynamo,
    transact_write,
    write_all,
)

FAST = RetryPolicy(max_attempts=4, base_s=0.001, max_s=0.005)


@pytest.fixture
def client(moto_endpoint) -> Any:
    return dynamodb_client("us-east-1", moto_endpoint)


@pytest.fixture
def table(client) -> str:
    name = f"lib-{uuid.uuid4().hex[:12]}"
    create_table(
        client,
        name,
        key_schema=[("pk", "HASH"), ("sk", "RANGE")],
        attributes={"pk": "S", "sk": "S", "gPk": "S", "gSk": "N"},
        indexes=[gsi("byScore", "gPk", "gSk", {"ProjectionType": "ALL"})],
        ttl_attribute="expiresAt",
    )
    return name


def put_requests(n: int) -> list[dict[str, Any]]:
    return [{"PutRequest": {"Item": {"pk": {"S": f"p{i:03d}"}, "sk": {"S": "s"}}}} for i in range(n)]


class Unprocessing:
    """Wraps a real client: the first `times` batch calls hand back their last `n` requests (or keys) unprocessed,
    without writing (reading) them, as DynamoDB does when throttled."""

    def __init__(self, real: Any, n: int, times: int = 1):
        self._real, self._n, self._left = real, n, times
        self._lock = threading.Lock()
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _fail(self, size: int) -> int:
        with self._lock:
            self.calls.append(size)
            fail = min(self._n, size) if self._left > 0 else 0
            self._left -= 1
        return fail

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, requests),) = RequestItems.items()
        fail = self._fail(len(requests))
        done, left = requests[: len(requests) - fail], requests[len(requests) - fail :]
        response = self._real.batch_write_item(RequestItems={table: done}) if done else {}
        return {**response, "UnprocessedItems": {table: left}} if left else response

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, spec),) = RequestItems.items()
        keys = spec["Keys"]
        fail = self._fail(len(keys))
        done, left = keys[: len(keys) - fail], keys[len(keys) - fail :]
        response = self._real.batch_get_item(RequestItems={table: {**spec, "Keys": done}}) if done else {}
        if left:
            response = {**response, "UnprocessedKeys": {table: {**spec, "Keys": left}}}
        return response


# -- values ---------------------------------------------------------------------------------------------------------
def test_values_round_trip_exactly():
    value = {
        "score": 0.1 + 0.2,
        "whole": 1.0,
        "count": 3,
        "flag": True,
        "none": None,
        "tags": ("a", "b"),
        "nested": {"amount": 12.5, "n": np.int64(7), "f": np.float64(0.25), "b": np.bool_(False)},
    }
    wire = serialize(to_dynamo(value))
    assert wire["M"]["score"] == {"N": "0.30000000000000004"} and wire["M"]["tags"] == {"L": [{"S": "a"}, {"S": "b"}]}
    back = from_dynamo(deserialize(wire))
    assert back["score"] == 0.1 + 0.2 and type(back["score"]) is float
    assert back["count"] == 3 and type(back["count"]) is int and back["flag"] is True and back["none"] is None
    assert back["nested"] == {"amount": 12.5, "n": 7, "f": 0.25, "b": False} and back["tags"] == ["a", "b"]
    assert back["whole"] == 1.0  # written as Decimal("1.0"): its exponent says float
    assert plain_item({"n": {"N": "42"}, "l": {"L": [{"N": "1"}]}}) == {"n": 42, "l": [1]}
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            number(bad)
    with pytest.raises(ValueError, match="type object"):
        to_dynamo(object())
    assert to_dynamo(2.5) == Decimal("2.5")


def test_sortable_ints_sort_as_strings_like_the_numbers():
    numbers = [-(2**40), -5, -1, 0, 1, 9, 10, 1_700_000_000, 2**61]
    encoded = [sortable_int(n) for n in numbers]
    assert sorted(encoded) == encoded and {len(e) for e in encoded} == {20}
    assert [from_sortable_int(e + "#touch") for e in encoded] == numbers


def test_one_session_serves_every_thread():
    sessions: list[Any] = []
    threads = [threading.Thread(target=lambda: sessions.append(shared_session())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in sessions}) == 1
    config = dynamodb_client("us-east-1", max_attempts=3).meta.config
    assert config.retries["mode"] == "standard" and config.retries["total_max_attempts"] == 4  # 3 retries


# -- the update builder ---------------------------------------------------------------------------------------------
def test_update_builder_names_every_attribute_and_value():
    u = Update({"pk": {"S": "k"}, "sk": {"S": "s"}}).where(state="planned", token=None).where_at_most("spent", 10)
    u.set(state="sending", reason=None).add("spent", 3).increment("attempts").set_path(("contacts", "a.b#c"), [1])
    u.remove("duePk").copy("doubtPk", "programId").where_exists("contacts")
    req = u.request("t")
    assert req["TableName"] == "t" and req["Key"] == {"pk": {"S": "k"}, "sk": {"S": "s"}}
    names, values = req["ExpressionAttributeNames"], req["ExpressionAttributeValues"]
    assert "a.b#c" in names.values() and "state" in names.values()  # reserved words and odd keys go through #names
    assert all(ph.startswith("#n") for ph in names) and all(ph.startswith(":v") for ph in values)
    assert req["UpdateExpression"].startswith("SET ") and " REMOVE " in req["UpdateExpression"]
    assert req["ConditionExpression"].count("attribute_not_exists") == 2  # token=None, and spent's absent case
    assert {"S": "planned"} in values.values() and {"N": "10"} in values.values()
    assert "ConditionExpression" not in Update({"pk": {"S": "k"}}).set(a=1).request("t")


def test_conditional_updates_and_puts_on_a_table(moto_endpoint, table):
    db = DynamoDbTable(table, region_name="us-east-1", endpoint_url=moto_endpoint)
    key = {"pk": {"S": "budget"}, "sk": {"S": "B"}}
    spend = Update(key).where_at_most("spent", Decimal(7)).add("spent", Decimal(3))
    assert db.update_item(spend, returns=True) == {"pk": "budget", "sk": "B", "spent": 3}
    assert db.update_item(Update(key).where_at_most("spent", Decimal(7)).add("spent", Decimal(3))) == {}
    assert db.update_item(Update(key).where_at_most("spent", Decimal(2)).add("spent", Decimal(3))) is None
    assert db.update_item(Update(key).set(note="x").where(state="gone")) is None  # condition failed: no write
    assert plain_item(db.get_items([key])[0]) == {"pk": "budget", "sk": "B", "spent": 6}
    item = {"pk": {"S": "once"}, "sk": {"S": "S"}}
    assert put_if_absent(db.client(), table, item) and not put_if_absent(db.client(), table, item)


# -- paging ---------------------------------------------------------------------------------------------------------
def test_query_pages_are_exact_and_counted(client, table):
    write_all(client, table, [{"PutRequest": {"Item": {"pk": {"S": "p"}, "sk": {"S": f"{i:02d}"}}}} for i in range(23)])
    pages = list(
        query_pages(
            client, 5, TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
        )
    )
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i["sk"]["S"] for p in pages for i in p] == [f"{i:02d}" for i in range(23)]
    assert (
        query_count(
            client,
            TableName=table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
            Limit=4,
        )
        == 23
    )


def test_create_table_is_idempotent_and_enables_ttl(client, table):
    create_table(
        client,
        table,
        key_schema=[("pk", "HASH"), ("sk", "RANGE")],
        attributes={"pk": "S", "sk": "S"},
        ttl_attribute="expiresAt",
    )
    desc = client.describe_table(TableName=table)["Table"]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert [i["IndexName"] for i in desc["GlobalSecondaryIndexes"]] == ["byScore"]
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expiresAt")


# -- batch writes and reads -----------------------------------------------------------------------------------------
def test_unprocessed_items_are_sent_again_until_written(client, table):
    flaky = Unprocessing(client, n=10)
    batches, retries = write_all(flaky, table, put_requests(60), FAST, concurrency=1)
    assert (batches, retries) == (3, 1) and flaky.calls == [25, 10, 25, 10]  # only the 10 unprocessed went again
    keys = [{"pk": {"S": f"p{i:03d}"}, "sk": {"S": "s"}} for i in range(60)]
    assert len(batch_get(client, table, keys, consistent=True)) == 60


def test_unprocessed_items_give_up_after_bounded_attempts(client, table):
    throttled = Unprocessing(client, n=25, times=99)
    with pytest.raises(UnprocessedError, match="2 of 2 requests still unprocessed after 4 attempts"):
        batch_write(throttled, table, put_requests(2), FAST)
    assert throttled.calls == [2, 2, 2, 2]


def test_unprocessed_keys_are_asked_again(client, table):
    write_all(client, table, put_requests(130))
    keys = [{"pk": {"S": f"p{i:03d}"}, "sk": {"S": "s"}} for i in range(130)] + [
        {"pk": {"S": "nope"}, "sk": {"S": "s"}}
    ]
    flaky = Unprocessing(client, n=7, times=2)
    items = batch_get(flaky, table, keys, consistent=True, projection="pk", policy=FAST)
    assert sorted(i["pk"]["S"] for i in items) == [f"p{i:03d}" for i in range(130)] and set(items[0]) == {"pk"}
    assert flaky.calls == [100, 7, 7, 31]  # 100 keys a call; the 7 left over asked twice, then the rest
    with pytest.raises(UnprocessedError, match="after 4 attempts"):
        batch_get(Unprocessing(client, n=100, times=99), table, keys[:3], policy=FAST)


# -- transactions ---------------------------------------------------------------------------------------------------
class Conflicting:
    """A client whose first `times` transactions are cancelled with these reasons."""

    def __init__(self, real: Any, reasons: list[str], times: int):
        self._real, self._reasons, self._left = real, reasons, times
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        if self._left > 0:
            self._left -= 1
            error = {"Code": "TransactionCanceledException", "Message": "cancelled"}
            reasons = [{"Code": c} for c in self._reasons]
            raise ClientError({"Error": error, "CancellationReasons": reasons}, "TransactWriteItems")
        return self._real.transact_write_items(TransactItems=TransactItems)


def test_transactions_are_retried_past_conflicts_not_past_failed_conditions(client, table):
    items = [{"Update": Update({"pk": {"S": "t"}, "sk": {"S": str(i)}}).set(n=i).request(table)} for i in range(2)]
    conflicted = Conflicting(client, ["None", "TransactionConflict"], times=2)
    assert transact_write(conflicted, items, FAST) is None and conflicted.calls == 3
    assert plain_item(client.get_item(TableName=table, Key={"pk": {"S": "t"}, "sk": {"S": "1"}})["Item"])["n"] == 1
    failed = Conflicting(client, ["ConditionalCheckFailed", "TransactionConflict"], times=9)
    assert transact_write(failed, items, FAST) == ["ConditionalCheckFailed", "TransactionConflict"]
    assert failed.calls == 1  # a failed condition is an answer, not a conflict
    stuck = Conflicting(client, ["TransactionConflict", "None"], times=99)
    assert transact_write(stuck, items, FAST) == ["TransactionConflict", "None"] and stuck.calls == 4
    real = [{"Update": Update({"pk": {"S": "t"}, "sk": {"S": "0"}}).where(n=5).set(n=6).request(table)}]
    assert transact_write(client, real, FAST) == ["ConditionalCheckFailed"]
