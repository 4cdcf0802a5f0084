"""DynamoDB requests built from parts: the conditional-update builder, GSI definitions, table creation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

from resources.dynamodb.codec import serialize

PAY_PER_REQUEST = "PAY_PER_REQUEST"


class Update:
    """One conditional UpdateItem (or a transaction's Update): every attribute through a #name, since DynamoDB
    reserves words such as `state`, and map keys (touch keys) may hold '.' or '#'."""

    def __init__(self, key: dict[str, Any]):
        self.key = key
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.conds: list[str] = []

    def n(self, *path: str) -> str:
        """A placeholder for an attribute path (each part its own #name)."""
        out = []
        for part in path:
            ph = f"#n{len(self.names)}"
            self.names[ph] = part
            out.append(ph)
        return ".".join(out)

    def v(self, value: Any) -> str:
        """A placeholder for a value (Decimals, not floats)."""
        ph = f":v{len(self.values)}"
        self.values[ph] = serialize(value)
        return ph

    def set(self, **attrs: Any) -> Update:
        """SET each attribute; a None value REMOVEs it (an absent attribute is this library's NULL)."""
        for name, value in attrs.items():
            if value is None:
                self.removes.append(self.n(name))
            else:
                self.sets.append(f"{self.n(name)} = {self.v(value)}")
        return self

    def set_path(self, path: tuple[str, ...], value: Any) -> Update:
        """SET a nested attribute (a map entry)."""
        self.sets.append(f"{self.n(*path)} = {self.v(value)}")
        return self

    def copy(self, name: str, source: str) -> Update:
        """SET an attribute to another attribute's value."""
        self.sets.append(f"{self.n(name)} = {self.n(source)}")
        return self

    def increment(self, name: str) -> Update:
        """SET the Number attribute to itself plus one (it must exist)."""
        self.sets.append(f"{self.n(name)} = {self.n(name)} + {self.v(1)}")
        return self

    def add(self, name: str, amount: Any) -> Update:
        """SET the Number attribute to itself plus `amount` (an absent attribute counts as 0)."""
        n = self.n(name)
        self.sets.append(f"{n} = if_not_exists({n}, {self.v(0)}) + {self.v(amount)}")
        return self

    def remove(self, *names: str) -> Update:
        """REMOVE these attributes."""
        self.removes.extend(self.n(a) for a in names)
        return self

    def remove_path(self, path: tuple[str, ...]) -> Update:
        """REMOVE a nested attribute (a map entry)."""
        self.removes.append(self.n(*path))
        return self

    def where(self, **attrs: Any) -> Update:
        """Condition: each attribute equals the value (None: the attribute is absent)."""
        for name, value in attrs.items():
            self.conds.append(
                f"attribute_not_exists({self.n(name)})" if value is None else f"{self.n(name)} = {self.v(value)}"
            )
        return self

    def where_at_most(self, name: str, limit: Any) -> Update:
        """Condition: the Number attribute is at most `limit` (absent: 0, so `limit` must not be negative).
        DynamoDB conditions have no arithmetic: `x + cost <= budget` is asked as `x <= budget - cost`."""
        n = self.n(name)
        self.conds.append(f"(attribute_not_exists({n}) OR {n} <= {self.v(limit)})")
        return self

    def where_exists(self, *path: str) -> Update:
        """Condition: the (nested) attribute exists."""
        self.conds.append(f"attribute_exists({self.n(*path)})")
        return self

    def request(self, table: str) -> dict[str, Any]:
        """The UpdateItem parameters (also a TransactWriteItems `Update`) for `table`."""
        expr = " ".join(
            part
            for part in (
                "SET " + ", ".join(self.sets) if self.sets else "",
                "REMOVE " + ", ".join(self.removes) if self.removes else "",
            )
            if part
        )
        req: dict[str, Any] = {
            "TableName": table,
            "Key": self.key,
            "UpdateExpression": expr,
            "ExpressionAttributeNames": self.names,
        }
        if self.conds:
            req["ConditionExpression"] = " AND ".join(self.conds)
        if self.values:
            req["ExpressionAttributeValues"] = self.values
        return req


def gsi(name: str, hash_key: str, range_key: str | None, projection: dict[str, Any]) -> dict[str, Any]:
    """A GlobalSecondaryIndexes entry (for `create_table`)."""
    keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return {"IndexName": name, "KeySchema": keys, "Projection": projection}


def create_table(
    client: Any,
    table_name: str,
    *,
    key_schema: Sequence[tuple[str, str]],
    attributes: Mapping[str, str],
    indexes: Sequence[dict[str, Any]] = (),
    ttl_attribute: str | None = None,
) -> None:
    """Create a pay-per-request table (key_schema: (attribute, HASH|RANGE); attributes: name -> S|N|B of every key
    attribute; indexes: `gsi` entries), wait until it exists, and enable TTL on `ttl_attribute`.  Idempotent: an
    existing table is left as is, but for the indexes it lacks, which are added (`add_missing_indexes`), and its TTL,
    enabled if it was not."""
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "BillingMode": PAY_PER_REQUEST,
        "KeySchema": [{"AttributeName": a, "KeyType": t} for a, t in key_schema],
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": t} for a, t in attributes.items()],
    }
    if indexes:
        kwargs["GlobalSecondaryIndexes"] = list(indexes)
    try:
        client.create_table(**kwargs)
    except client.exceptions.ResourceInUseException:
        pass  # exists: creating is idempotent
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    add_missing_indexes(client, table_name, attributes, indexes)
    if ttl_attribute is not None:
        ttl = client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(
                TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
            )


def index_active(client: Any, table_name: str, index_name: str, wait_s: float) -> bool:
    """Poll DescribeTable (tenacity: 0.5 s growing to 5 s) until the index is ACTIVE; False after `wait_s`."""

    def status() -> str | None:
        table = client.describe_table(TableName=table_name)["Table"]
        return {i["IndexName"]: i.get("IndexStatus") for i in table.get("GlobalSecondaryIndexes", [])}.get(index_name)

    polling = Retrying(
        retry=retry_if_result(lambda s: s != "ACTIVE"),
        stop=stop_after_delay(wait_s),
        wait=wait_exponential(multiplier=0.5, max=5.0),
        retry_error_callback=lambda state: None,
    )
    return polling(status) == "ACTIVE"


def add_missing_indexes(
    client: Any, table_name: str, attributes: Mapping[str, str], indexes: Sequence[dict[str, Any]], wait_s: int = 600
) -> list[str]:
    """Add to an existing table the `indexes` it lacks (a table created before an index was), one UpdateTable each
    (DynamoDB builds one at a time), waiting until each is ACTIVE; the names added.  DynamoDB backfills the index
    from the items that already carry its key attributes."""
    present = {
        i["IndexName"] for i in client.describe_table(TableName=table_name)["Table"].get("GlobalSecondaryIndexes", [])
    }
    added = []
    for index in indexes:
        if index["IndexName"] in present:
            continue
        keys = [k["AttributeName"] for k in index["KeySchema"]]
        client.update_table(
            TableName=table_name,
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": attributes[a]} for a in keys],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
        if not index_active(client, table_name, index["IndexName"], wait_s):
            raise TimeoutError(f"index {index['IndexName']} of {table_name} not ACTIVE after {wait_s} s")
        added.append(index["IndexName"])
    return added
