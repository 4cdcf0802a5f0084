"""Pages of the SQLite candidate store: keyset SQL, cursor positions, and rows → `Page` / `JsonPage`.

Every page query fetches one row more than `limit`: its presence says there is a next page, whose cursor is the
(sort key, pk) position of the last row returned.  No OFFSET ever: page 1,000 costs what page 1 costs.
"""

from __future__ import annotations

from typing import Any

from resources.store.base import JsonPage, Page, decode_cursor, encode_cursor, resolve_now
from resources.store.sqlite_schema import CHURN_INDEX_WHERE, loads

# (body, *position) of each row, as the page queries select them: the position is the keyset (sort key, pk), or
# (partition key, score, customer id) for the churn-reason index.
PageRows = list[tuple[Any, ...]]
CHURN_POSITION_TYPES = ([str, float, str], [str, int, str])


def check_limit(limit: int) -> None:
    """A page size must be a positive int."""
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")


def cursor_position(pos: Any, first_type: Any, second_type: Any) -> tuple[Any, Any]:
    """A decoded cursor's (sort key, pk) position, checked against the query's types."""
    if (
        not isinstance(pos, list)
        or len(pos) != 2
        or isinstance(pos[0], bool)
        or not isinstance(pos[0], first_type)
        or not isinstance(pos[1], second_type)
    ):
        raise ValueError("invalid cursor for this query")
    return pos[0], pos[1]


def by_score_sql(
    key_col: str,
    index: str,
    kind: str,
    scope: str,
    min_score: float | None,
    limit: int,
    cursor: str | None,
    now: float | None,
    extra: str,
    extra_params: list[Any],
) -> tuple[str, list[Any]]:
    """(SQL, parameters) of one page on (score DESC, pk DESC) over `index`, one row more than `limit`."""
    check_limit(limit)
    # INDEXED BY: the planner must never pick another index (or a scan) for a serving read.
    sql = f"SELECT body, score, pk FROM candidates INDEXED BY {index} WHERE {key_col} = ? AND expires_at > ? {extra}"
    params: list[Any] = [scope, resolve_now(now), *extra_params]
    if min_score is not None:
        sql += " AND score >= ?"
        params.append(float(min_score))
    if cursor is not None:
        last_score, last_pk = cursor_position(decode_cursor(cursor, kind, scope), (float, int), str)
        sql += " AND (score, pk) < (?, ?)"
        params += [float(last_score), last_pk]
    sql += " ORDER BY score DESC, pk DESC LIMIT ?"
    params.append(limit + 1)  # one more than asked: tells whether there is a next page
    return sql, params


def churn_reason_sql(
    program_id: str,
    churn_reason: str,
    scope: str,
    since: str | None,
    min_score: float | None,
    limit: int,
    cursor: str | None,
    now: float | None,
) -> tuple[str, list[Any]]:
    """(SQL, parameters) of one page on (partition key DESC, score DESC, customer id DESC) over candidates_gsi5, one
    row more than `limit`."""
    check_limit(limit)
    sql = (
        "SELECT body, partition_key, score, customer_id FROM candidates INDEXED BY candidates_gsi5"
        f" WHERE {CHURN_INDEX_WHERE} AND expires_at > ?"
    )
    params: list[Any] = [program_id, churn_reason, resolve_now(now)]
    if since is not None:
        sql += " AND partition_key >= ?"
        params.append(since)
    if min_score is not None:
        sql += " AND score >= ?"
        params.append(float(min_score))
    if cursor is not None:
        pos = decode_cursor(cursor, "sqlite-gsi5", scope)
        if not (isinstance(pos, list) and len(pos) == 3 and [type(p) for p in pos] in CHURN_POSITION_TYPES):
            raise ValueError("invalid cursor for this query")
        sql += " AND (partition_key, score, customer_id) < (?, ?, ?)"
        params += [pos[0], float(pos[1]), pos[2]]
    sql += " ORDER BY partition_key DESC, score DESC, customer_id DESC LIMIT ?"
    params.append(limit + 1)
    return sql, params


def page(rows: PageRows, limit: int, kind: str, scope: str) -> Page:
    """The decoded records of up to `limit` rows, and the next page's cursor if there is one."""
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(kind, scope, list(rows[-1][1:])) if more else None
    return Page(items=[loads(r[0]) for r in rows], next_cursor=cursor)


def json_page(rows: PageRows, limit: int, kind: str, scope: str) -> JsonPage:
    """Like `page`, but the bodies are spliced as stored (each is one record's JSON, as `dumps` wrote it)."""
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(kind, scope, list(rows[-1][1:])) if more else None
    return JsonPage(items=("[" + ",".join([r[0] for r in rows]) + "]").encode(), next_cursor=cursor)
