"""The candidate store's DynamoDB items: a record with its table and index keys, back, and cursors (the layout is
in `resources.store.dynamodb`'s docstring)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from resources.dynamodb import deserialize, from_dynamo, gsi, number, serialize, to_dynamo
from resources.store.base import Record, churn_index_key, churn_scope, index_keys, since_key, sortable_score

GSI1, GSI2, GSI3, GSI4, GSI5 = "gsi1", "gsi2", "gsi3", "gsi4", "gsi5"
KEY_ATTRS = ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "gsi4sk", "gsi5pk", "gsi5sk")
INDEX_KEYS = {
    GSI1: ("gsi1pk", "gsi1sk"),
    GSI2: ("gsi2pk", "gsi2sk"),
    GSI3: ("gsi3pk", "gsi3sk"),
    GSI4: ("gsi2pk", "gsi4sk"),
    GSI5: ("gsi5pk", "gsi5sk"),
}
# The candidates table's key attributes (the scores sort numerically) and indexes.
STRING_KEYS = ("pk", "sk", "gsi1pk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "gsi5pk", "gsi5sk")
CANDIDATE_ATTRIBUTES = {a: "S" for a in STRING_KEYS} | {
    "gsi1sk": "N",
    "gsi4sk": "N",
}
CANDIDATE_INDEXES = [
    gsi(GSI1, "gsi1pk", "gsi1sk", {"ProjectionType": "ALL"}),
    gsi(GSI2, "gsi2pk", "gsi2sk", {"ProjectionType": "ALL"}),
    gsi(GSI3, "gsi3pk", "gsi3sk", {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["expiresAt"]}),
    gsi(GSI4, "gsi2pk", "gsi4sk", {"ProjectionType": "ALL"}),
    gsi(GSI5, "gsi5pk", "gsi5sk", {"ProjectionType": "ALL"}),
]
_FLOAT_FIELDS = ("score",)  # documented float fields: DynamoDB may normalise 1.0 to "1"; they come back as float
_FLOAT_MAP_FIELDS = ("scores",)


def to_item(rec: Record, program_id: str, partition_key: str) -> dict[str, Any]:
    """A record as a low-level DynamoDB item: its fields plus the key attributes of the table and the GSIs."""
    clash = [k for k in rec if k in KEY_ATTRS]
    if clash:
        raise ValueError(f"candidate record fields {clash} collide with the store's key attributes")
    customer_id = rec["customerId"]
    item = {k: serialize(to_dynamo(v)) for k, v in rec.items()}
    item["pk"] = {"S": customer_id}
    item["sk"] = {"S": program_id}
    gsi1pk, gsi2pk = index_keys(rec, program_id)
    score = rec.get("score")
    if gsi1pk is not None:
        assert score is not None  # index_keys gives a GSI1 key only to a record with a score
        item["gsi1pk"] = {"S": gsi1pk}
        item["gsi1sk"] = {"N": number(float(score))}
    if gsi2pk is not None:
        item["gsi2pk"] = {"S": gsi2pk}
        item["gsi2sk"] = {"S": f"{partition_key}#{customer_id}"}
        if score is not None:
            item["gsi4sk"] = {"N": number(float(score))}
    gsi5pk = churn_index_key(rec, program_id)
    if gsi5pk is not None:  # partition date, then score, then customer: newest first, highest score first
        item["gsi5pk"] = {"S": gsi5pk}
        item["gsi5sk"] = {"S": f"{partition_key}#{sortable_score(rec['score'])}#{customer_id}"}
    item["gsi3pk"] = {"S": program_id}
    item["gsi3sk"] = {"S": f"{partition_key}#{customer_id}"}
    return item


def from_item(item: Mapping[str, Any]) -> Record:
    """A low-level item back to the record that was written: key attributes dropped, numbers as int/float."""
    rec = {k: from_dynamo(deserialize(v)) for k, v in item.items() if k not in KEY_ATTRS}
    for f in _FLOAT_FIELDS:
        if isinstance(rec.get(f), int) and not isinstance(rec[f], bool):
            rec[f] = float(rec[f])
    for f in _FLOAT_MAP_FIELDS:
        if isinstance(rec.get(f), dict):
            rec[f] = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in rec[f].items()}
    return rec


def encode_key(key: Mapping[str, Any]) -> str:
    """Cursor = URL-safe base64 of the low-level ExclusiveStartKey (opaque to callers)."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_key(cursor: str, attrs: Sequence[str], hash_value: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a cursor: exactly this index's key attributes, and the same index partition as the query."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ok = (
            isinstance(key, dict)
            and set(key) == set(attrs)
            and key[attrs[2]] == dict(hash_value)
            and all(isinstance(v, dict) and len(v) == 1 for v in key.values())
        )
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ValueError("invalid cursor for this query")
    return key


# The score cache's items: pk = namespace#key, score, expiresAt (TTL).
SCORE_PROJECTION = ("#pk, #s, #e", {"#pk": "pk", "#s": "score", "#e": "expiresAt"})


def score_item(namespace: str, key: str, score: float, expires_at: int) -> dict[str, Any]:
    """A score cache item (low-level)."""
    return {
        "pk": {"S": f"{namespace}#{key}"},
        "score": {"N": number(float(score))},
        "expiresAt": {"N": str(int(expires_at))},
    }


def live_scores(items: Sequence[Mapping[str, Any]], by_pk: Mapping[str, str], now: float) -> dict[str, float]:
    """{key: score} of the cache items still live at `now` (`by_pk`: item pk -> the caller's key)."""
    return {by_pk[item["pk"]["S"]]: float(item["score"]["N"]) for item in items if float(item["expiresAt"]["N"]) > now}


def churn_query(
    program_id: str, churn_reason: str, since_date: date | str | None, min_score: float | None
) -> tuple[str, dict[str, Any], str | None]:
    """(key condition, values, filter) of a GSI5 query: `since_date` bounds the sort key, which starts with the
    partition date; `min_score` filters the record's own score."""
    values: dict[str, Any] = {":h": {"S": churn_scope(program_id, churn_reason)}}
    condition = "gsi5pk = :h"
    since = since_key(since_date)
    if since is not None:
        condition += " AND gsi5sk >= :since"
        values[":since"] = {"S": since}
    if min_score is None:
        return condition, values, None
    values[":min"] = {"N": number(float(min_score))}
    return condition, values, "score >= :min"
