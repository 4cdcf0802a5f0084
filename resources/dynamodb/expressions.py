"""DynamoDB requests built from parts: the conditional-update builder, GSI definitions, table creation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
    existing table is left as is (its TTL is enabled if it was not)."""
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
    if ttl_attribute is not None:
        ttl = client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(
                TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
            )
