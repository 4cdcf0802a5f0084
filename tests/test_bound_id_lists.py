"""Customer id lists reach the warehouse as bound parameters, never spliced into SQL (issue #13, item 6), and a `:name`
inside a string literal stays text.  Every id here carries a quote (or a backslash, which escapes a quote in
Snowflake): the SQL text each reader sends must not contain it, and the rows must be exactly the ids asked for."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb
import pyarrow as pa
import pytest

from engage_assets.domain.contacts import CONTACT_COLUMNS
from resources.customer_state import CustomerState, WarehouseConversions
from resources.warehouse.base import Query, bind_lists, bind_style, split_query
from resources.warehouse.duckdb import DuckDBWarehouse

EVIL = ["o'brien", "x' OR '1'='1", "back\\' OR 1=1 --", "plain"]
OTHERS = ["someone-else", "o", "x"]


class RecordingWarehouse(DuckDBWarehouse):
    """The DuckDB warehouse, keeping the SQL text of every query it is sent."""

    def query_arrow_many(self, queries: Sequence[Query]) -> list[pa.Table]:
        self.__dict__.setdefault("_sent", []).extend(split_query(q)[0] for q in queries)
        return super().query_arrow_many(queries)

    def sent(self) -> list[str]:
        return self.__dict__.get("_sent", [])


@pytest.fixture
def warehouse(tmp_path) -> RecordingWarehouse:
    path = str(tmp_path / "warehouse.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE SCHEMA marts")
    cols = ", ".join(f"{c} VARCHAR" for c in CONTACT_COLUMNS)
    con.execute(f"CREATE TABLE marts.customers ({cols})")
    for cid in EVIL + OTHERS:
        con.execute(
            "INSERT INTO marts.customers (customer_id, account_status, marketplace) VALUES (?, 'active', 'US')", [cid]
        )
    con.execute("CREATE TABLE marts.conversions (customer_id VARCHAR, occurred_at TIMESTAMP)")
    con.executemany(
        "INSERT INTO marts.conversions VALUES (?, TIMESTAMP '2026-11-25 10:00')", [[c] for c in EVIL + OTHERS]
    )
    con.close()
    return RecordingWarehouse(path=path)


def _no_id_in(sent: list[str]) -> None:
    assert sent
    for sql in sent:
        for cid in EVIL:
            assert cid not in sql, f"id {cid!r} spliced into {sql!r}"


def test_send_time_contacts_bind_the_ids(warehouse):
    rows = CustomerState(warehouse=warehouse).contacts(EVIL)
    assert sorted(rows) == sorted(EVIL)  # exactly the ids asked for: no quote broke out of a literal
    _no_id_in(warehouse.sent())


def test_conversions_bind_the_ids(warehouse):
    assert WarehouseConversions(warehouse).converted_since(EVIL, date(2026, 11, 20)) == set(EVIL)
    _no_id_in(warehouse.sent())


def test_an_empty_list_matches_nothing(warehouse):
    table = warehouse.query_arrow("SELECT customer_id FROM marts.customers WHERE customer_id IN (:ids)", {"ids": []})
    assert table.num_rows == 0


@pytest.mark.parametrize("extra", [0, 100])  # a short list: one parameter per value; a long one: one list parameter
def test_short_and_long_id_lists_match_exactly_the_ids(warehouse, extra):
    from resources.warehouse.duckdb import SHORT_LIST, _duckdb_bound

    ids = EVIL + [f"absent-{i}" for i in range(extra)]
    sql = "SELECT customer_id FROM marts.customers WHERE customer_id IN (:ids) ORDER BY 1"
    table = warehouse.query_arrow(sql, {"ids": ids})
    assert table.column("customer_id").to_pylist() == sorted(EVIL)
    _no_id_in(warehouse.sent())
    bound, values = _duckdb_bound(sql, {"ids": ids})
    assert ("unnest" in bound) == (len(ids) > SHORT_LIST)
    assert sorted(v for v in values.values() if isinstance(v, str)) == ([] if extra else sorted(ids))


def test_many_queries_on_one_connection_bind_lists_and_scalars(warehouse):
    sql = "SELECT customer_id FROM marts.customers WHERE customer_id IN (:ids) AND marketplace = :m ORDER BY 1"
    a, b = warehouse.query_arrow_many([(sql, {"ids": EVIL[:2], "m": "US"}), (sql, {"ids": ("o'brien",), "m": "UK"})])
    assert a.column("customer_id").to_pylist() == sorted(EVIL[:2]) and b.num_rows == 0
    _no_id_in(warehouse.sent())


def test_snowflake_and_athena_bind_one_parameter_per_value():
    sql, values = bind_lists(
        "SELECT 1 FROM t WHERE id in ( :ids ) AND d = :d", {"ids": EVIL + EVIL[:1], "d": 1}, "expand"
    )
    assert sql == "SELECT 1 FROM t WHERE id IN (:ids__0, :ids__1, :ids__2, :ids__3) AND d = :d"
    assert [values[f"ids__{i}"] for i in range(4)] == EVIL
    assert bind_style(sql, "qmark")[1] == ["ids__0", "ids__1", "ids__2", "ids__3", "d"]


def test_a_colon_name_inside_a_string_literal_is_not_a_parameter():
    sql = "SELECT ':x' AS a, 'it''s :y' AS b, 'a\\' :z' AS c, \":q\" AS d, :w AS e -- :c"
    query, names = bind_style(sql, "dollar")
    assert names == ["w"]
    assert query == sql.replace(":w", "$w")
    sql2, values = bind_lists("SELECT 'IN (:ids)' AS t, 1 WHERE x IN (:ids)", {"ids": ["a"]}, "expand")
    assert sql2 == "SELECT 'IN (:ids)' AS t, 1 WHERE x IN (:ids__0)"


def test_duckdb_keeps_a_literal_colon_name(warehouse):
    table = warehouse.query_arrow("SELECT ':not_a_param' AS t, :p AS p", {"p": 1})
    assert table.to_pylist() == [{"t": ":not_a_param", "p": 1}]
