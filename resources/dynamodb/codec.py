"""DynamoDB values: Python values to and from the low-level attribute form, exact numbers, sortable integers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

SORTABLE_WIDTH = 20
_SORTABLE_OFFSET = 2**62  # |n| < 2^62 keeps every encoded value positive and 20 digits wide
_SER, _DESER = TypeSerializer(), TypeDeserializer()


def number(value: float | int) -> str:
    """A DynamoDB Number's wire form.  repr() of a float is the shortest string that reads back to the same float,
    so Decimal(repr(x)) -> float is exact; NaN and infinities have no DynamoDB representation."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("DynamoDB cannot store NaN or infinite numbers")
        return repr(value)
    return str(value)


def to_dynamo(value: Any) -> Any:
    """Python (JSON-like) value -> what boto3's TypeSerializer accepts: floats become Decimal, tuples lists."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):  # numpy float64 included (a float subclass)
        return Decimal(number(float(value)))
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    if hasattr(value, "item"):  # other numpy scalars (int64, bool_)
        return to_dynamo(value.item())
    raise ValueError(f"cannot store a value of type {type(value).__name__} in DynamoDB")


def from_dynamo(value: Any) -> Any:
    """Inverse of `to_dynamo` after deserializing: Decimal -> int when written as an integer, else float."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        integral = value == value.to_integral_value() and isinstance(exponent, int) and exponent >= 0
        return int(value) if integral else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """A deserialized value with every Number as int (for tables that store no fractions)."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def serialize(value: Any) -> dict[str, Any]:
    """A Python value (Decimals, not floats) as a low-level attribute value, e.g. {"S": "x"}."""
    return _SER.serialize(value)


def deserialize(attribute: Mapping[str, Any]) -> Any:
    """A low-level attribute value as Python (Numbers come back as Decimal)."""
    return _DESER.deserialize(attribute)


def plain_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A low-level item as plain Python values, Numbers as int (`plain`)."""
    return {k: plain(_DESER.deserialize(v)) for k, v in raw.items()}


def sortable_int(n: int) -> str:
    """An integer as a fixed-width string whose string order is the integer order (for String sort keys)."""
    return f"{int(n) + _SORTABLE_OFFSET:0{SORTABLE_WIDTH}d}"


def from_sortable_int(s: str) -> int:
    """Inverse of `sortable_int`; reads the first SORTABLE_WIDTH characters (a sort key may go on after them)."""
    return int(s[:SORTABLE_WIDTH]) - _SORTABLE_OFFSET
