"""Athena on a moto server: query results seeded through moto's results-backend API, in GetQueryResults' shape."""

from __future__ import annotations

import json
import urllib.request


def moto_api(endpoint: str, path: str, body: dict) -> None:
    """POST `body` to one of moto's own endpoints (`/moto-api/...`)."""
    req = urllib.request.Request(
        f"{endpoint}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status in (200, 201)


def seed_athena_results(endpoint: str, results: list[dict], region: str = "us-east-1") -> None:
    """Queue query results ({"rows": [...], "column_info": [...]}): each new execution's results take the next."""
    moto_api(endpoint, "/moto-api/static/athena/query-results", {"region": region, "results": results})


def athena_col(name: str, kind: str, **extra) -> dict:
    """One ColumnInfo entry of a result set."""
    return {
        "CatalogName": "hive",
        "SchemaName": "",
        "TableName": "",
        "Name": name,
        "Label": name,
        "Type": kind,
        "Precision": extra.get("Precision", 0),
        "Scale": extra.get("Scale", 0),
        "Nullable": "UNKNOWN",
        "CaseSensitive": kind == "varchar",
    }


def athena_row(*values: str | None) -> dict:
    """One row of a result set: every value as text, None as a missing VarCharValue (NULL)."""
    return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}
