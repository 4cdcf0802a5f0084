"""The filter chain's codes in Arrow (`domain.filter_arrow`) are DuckDB's codes for the same SQL, row for row, NULLs
included; SQL outside the subset (or a column type Arrow would compare differently) falls back to DuckDB."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_assets.domain import filter_arrow
from engage_assets.domain.config import load_program
from engage_assets.domain.filter_arrow import chain_codes, compile_check, first_failed_codes, sql_codes
from engage_assets.domain.filters import Check, CompiledFilter, compile_chain
from engage_assets.domain.pipeline import apply_filter_chain

CART = load_program(Path(__file__).parent / "fixtures" / "abandoned-cart-recovery.yaml")
CART_COLUMNS = {
    "customer_id": pa.string(),
    "cart_id": pa.string(),
    "account_status": pa.string(),
    "payment_method_on_file": pa.bool_(),
    "cart_value": pa.float64(),
    "days_since_program_offer": pa.int32(),
    "marketing_opt_out": pa.bool_(),
    "cart_active": pa.bool_(),
    "recovery_messages_7d": pa.int64(),
    "all_items_in_stock": pa.bool_(),
}
VALUES = {
    "account_status": st.sampled_from(["active", "suspended", "closed", "", "Active"]),
    "payment_method_on_file": st.booleans(),
    "cart_value": st.sampled_from([0.0, 49.99, 50.0, 50.01, 999.0, -1.0]),
    "days_since_program_offer": st.integers(0, 200),
    "marketing_opt_out": st.booleans(),
    "cart_active": st.booleans(),
    "recovery_messages_7d": st.integers(0, 4),
    "all_items_in_stock": st.booleans(),
}


@st.composite
def cart_rows(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 30))
    data = {"customer_id": [f"C{i}" for i in range(n)], "cart_id": [f"K{i}" for i in range(n)]}
    for name, values in VALUES.items():
        data[name] = draw(st.lists(st.none() | values, min_size=n, max_size=n))
    return pa.table({k: pa.array(v, CART_COLUMNS[k]) for k, v in data.items()})


@settings(max_examples=150, deadline=None)
@given(cart_rows())
def test_the_cart_chain_gives_duckdbs_codes(table):
    chain = compile_chain(CART.ordered_filters(), set(table.column_names))
    codes = chain_codes(chain, table)
    assert codes is not None  # the spec's chain is inside the subset
    np.testing.assert_array_equal(codes, sql_codes(chain, table))


def chain_of(*sqls: str) -> list[CompiledFilter]:
    return [CompiledFilter(f"f{i}", sql, "r", [], (Check(sql, "r", "u"),)) for i, sql in enumerate(sqls)]


SUBSET = chain_of(
    "x BETWEEN -2 AND 3",
    "s NOT IN ('a', 'it''s')",
    "(x > 1.5 OR b) AND NOT coalesce(s = 'b', false)",
    "y <> 2 OR s >= 'b'",
    "coalesce(y, x, 0) <= 4",
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.integers(-4, 6),
            st.none() | st.sampled_from(["a", "b", "c", "it's", ""]),
            st.none() | st.booleans(),
            st.none() | st.integers(0, 5),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_every_supported_construct_gives_duckdbs_codes(rows):
    x, s, b, y = zip(*rows, strict=True)
    table = pa.table(
        {
            "x": pa.array(x, pa.int64()),
            "s": pa.array(s, pa.string()),
            "b": pa.array(b, pa.bool_()),
            "y": pa.array(y, pa.int64()),
        }
    )
    codes = chain_codes(SUBSET, table)
    assert codes is not None
    np.testing.assert_array_equal(codes, sql_codes(SUBSET, table))


@pytest.mark.parametrize(
    "sql",
    [
        "CASE WHEN x > 1 THEN true ELSE false END",
        "CAST(x AS INTEGER) > 1",
        "x + 1 > 2",
        "lower(s) = 'a'",
        "x IN (SELECT 1)",
        "not valid sql (((",
    ],
)
def test_sql_outside_the_subset_is_left_to_duckdb(sql):
    assert compile_check(sql) is None
    table = pa.table({"x": pa.array([1, 2, None], pa.int64()), "s": pa.array(["a", None, "b"])})
    chain = chain_of(sql)
    assert chain_codes(chain, table) is None
    if "(((" not in sql:
        np.testing.assert_array_equal(first_failed_codes(chain, table), sql_codes(chain, table))


def test_types_arrow_would_compare_differently_are_left_to_duckdb():
    table = pa.table({"d": pa.array([date(2026, 1, 1), None]), "s": pa.array(["1", "2"]), "x": pa.array([1, 2])})
    assert chain_codes(chain_of("d >= '2025-12-31'"), table) is None  # a date against a string literal
    assert chain_codes(chain_of("s > 1"), table) is None  # text against a number
    assert chain_codes(chain_of("x"), table) is None  # not a boolean
    np.testing.assert_array_equal(
        first_failed_codes(chain_of("d >= '2025-12-31'"), table), sql_codes(chain_of("d >= '2025-12-31'"), table)
    )


def test_the_stage_result_is_the_same_on_either_path(monkeypatch):
    rng = np.random.default_rng(3)
    n = 200
    table = pa.table(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "cart_id": [f"K{i}" for i in range(n)],
            "account_status": rng.choice(["active", "suspended"], n),
            "payment_method_on_file": rng.uniform(0, 1, n) < 0.9,
            "cart_value": rng.uniform(0, 200, n),
            "days_since_program_offer": pa.nulls(n, pa.int32()),
            "marketing_opt_out": rng.uniform(0, 1, n) < 0.1,
            "cart_active": rng.uniform(0, 1, n) < 0.9,
            "recovery_messages_7d": rng.integers(0, 3, n),
            "all_items_in_stock": pa.array(np.where(rng.uniform(0, 1, n) < 0.1, None, rng.uniform(0, 1, n) < 0.9)),
        }
    )
    arrow = apply_filter_chain(CART, table)
    monkeypatch.setattr(filter_arrow, "ARROW_MAX_ROWS", 0)  # every batch through DuckDB
    duck = apply_filter_chain(CART, table)
    assert arrow.table.equals(duck.table)
    assert arrow.rejected.cast(pa.schema([(c, pa.string()) for c in arrow.rejected.column_names])).equals(
        duck.rejected.cast(pa.schema([(c, pa.string()) for c in duck.rejected.column_names]))
    )
    assert arrow.removed == duck.removed and sum(duck.removed.values()) > 0
