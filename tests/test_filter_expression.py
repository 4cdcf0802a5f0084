"""A filter rule without Python (#12, item 2): an `expression` business rule in a program's filterChain — a SQL
condition over the batch's columns, checked when the config loads, compiled into the same one-pass chain with its own
reasons (NULL: unknown) and its own removed count."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from engage_assets.domain import pipeline
from engage_assets.domain.config import ConfigError, ProgramConfig, load_program
from engage_assets.domain.filter_expression import ExpressionError, parse_expression
from engage_assets.domain.filters import columns_judged
from engage_assets.domain.sources import KNOWN_CUSTOMER, split_invalid
from engage_assets.settings import PROJECT_ROOT
from tests.test_filter_reasons import SCHEMA, row

CONFIGS = PROJECT_ROOT / "program_configs"
SMALL_OR_JP = {
    "filterId": "small-orders",
    "type": "business-rule",
    "rule": "expression",
    "order": 6,
    "parameters": {
        "expression": "order_value_usd >= 25 AND marketplace <> 'JP'",
        "reason": "small orders and JP excluded",
    },
}


def refunds_with(tmp_path: Path, *filters: dict, required: dict | None = None) -> Path:
    """proactive_refunds.yaml with `filters` appended to its chain (and `required` columns added), in tmp_path."""
    raw = yaml.safe_load((CONFIGS / "proactive_refunds.yaml").read_text())
    raw["filterChain"] += list(filters)
    raw["dataConnectors"][0]["requiredColumns"].update(required or {})
    path = tmp_path / "refunds.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_chain(program: ProgramConfig, rows: list[dict]):
    """The source stage's validation, then the chain: {customer_id: (filter or 'source', reason)}, eligible, removed."""
    schema = SCHEMA.append(pa.field("marketplace", pa.string()))
    batch = pa.Table.from_pylist([{"marketplace": "US", **r} for r in rows], schema)
    valid, invalid = split_invalid(batch, program.connector.requiredColumns, columns_judged(program.ordered_filters()))
    outcome = {r["customer_id"]: ("source", r["rejection_reason"]) for r in invalid.to_pylist()}
    result = pipeline.apply_filter_chain(program, valid)
    outcome |= {r["customer_id"]: (r["filter_id"], r["reason"]) for r in result.rejected.to_pylist()}
    return outcome, sorted(result.table.column("customer_id").to_pylist()), result.removed


def test_an_expression_removes_its_rows_with_its_reason_and_null_as_unknown(tmp_path):
    program = load_program(refunds_with(tmp_path, SMALL_OR_JP))
    assert isinstance(program, ProgramConfig)
    rejected, eligible, removed = run_chain(
        program,
        [
            row("ok", order_value_usd=25.0),  # at the bound: kept (>=)
            row("small", order_value_usd=24.99),
            row("jp", marketplace="JP"),
            # NULL order value: the expression judges it (not the source stage) and cannot say: unknown
            row("no-value", order_value_usd=None),
            row("no-market", marketplace=None),
            # FALSE AND NULL is FALSE: a small order is rejected as small whatever its marketplace
            row("small-no-market", order_value_usd=10.0, marketplace=None),
            row("late-filter", customer_complaints=1),  # an earlier filter of the chain takes it first
        ],
    )
    assert eligible == ["ok"]
    unknown = "small orders and JP excluded (unknown: NULL in order_value_usd or marketplace)"
    assert {k: v for k, v in rejected.items() if v[0] == "small-orders"} == {
        "small": ("small-orders", "small orders and JP excluded"),
        "jp": ("small-orders", "small orders and JP excluded"),
        "no-value": ("small-orders", unknown),
        "no-market": ("small-orders", unknown),
        "small-no-market": ("small-orders", "small orders and JP excluded"),
    }
    assert rejected["late-filter"][0] == "issue-severity"
    assert removed["small-orders"] == 5 and removed["issue-severity"] == 1


def test_two_expression_filters_count_apart_with_their_own_reasons(tmp_path):
    high_value = {
        "filterId": "high-value",
        "type": "business-rule",
        "rule": "expression",
        "order": 7,
        "parameters": {
            "expression": "lifetime_value_usd BETWEEN 0 AND 5000 OR lower(account_status) = 'vip'",
            "reason": "lifetime value over 5,000 (handled by account managers)",
            "unknownReason": "lifetime value unknown",
        },
    }
    program = load_program(refunds_with(tmp_path, SMALL_OR_JP, high_value))
    assert isinstance(program, ProgramConfig)
    rejected, eligible, removed = run_chain(
        program, [row("ok"), row("small", order_value_usd=5.0), row("big", lifetime_value_usd=9000.0)]
    )
    assert eligible == ["ok"]
    assert rejected["big"] == ("high-value", "lifetime value over 5,000 (handled by account managers)")
    assert (removed["small-orders"], removed["high-value"]) == (1, 1)


def test_filter_id_expression_runs_the_rule_without_a_rule_field(tmp_path):
    spec = {**SMALL_OR_JP, "filterId": "expression"}
    del spec["rule"]
    program = load_program(refunds_with(tmp_path, spec))
    assert [f.rule for f in program.ordered_filters()][-1] == "expression"


@pytest.mark.parametrize(
    "expression, field, reason",
    [
        ("order_valu_usd >= 25", "filterChain.5.parameters.expression", "unknown column 'order_valu_usd' (did you"),
        ("SELECT customer_id FROM marts.customers", "filterChain.5", "SELECT is a statement, not a condition"),
        ("DROP TABLE marts.customers", "filterChain.5", "DROP is a statement, not a condition"),
        ("order_value_usd >= 25; DROP TABLE x", "filterChain.5", "one condition only: no ';'"),
        ("order_value_usd >= 25;", "filterChain.5", "one condition only: no ';'"),
        ("read_csv('/etc/passwd') IS NOT NULL", "filterChain.5", "function 'read_csv' is not allowed"),
        ("my_udf(order_value_usd)", "filterChain.5", "function 'my_udf' is not allowed"),
        ("delivery_date > current_date", "filterChain.5", "function 'current_date' is not allowed"),
        ("customer_id IN (SELECT customer_id FROM x)", "filterChain.5", "a subquery (SELECT …) is not allowed"),
        ("order_value_usd * 2", "filterChain.5", "gives a value, not TRUE/FALSE"),
        ("item_condition", "filterChain.5.parameters.expression", "gives VARCHAR, not TRUE/FALSE"),
        ("lower(order_value_usd) = 'x'", "filterChain.5.parameters.expression", "lower(DOUBLE)"),
        ("o.order_value_usd > 1", "filterChain.5", "name columns without a table"),
        ("order_value_usd > :min", "filterChain.5", "parameters ($min) are not allowed"),
        ("order_value_usd >=", "filterChain.5", "not valid SQL"),
    ],
)
def test_a_bad_expression_fails_at_load_with_file_field_and_reason(tmp_path, expression, field, reason):
    path = refunds_with(
        tmp_path, {**SMALL_OR_JP, "parameters": {**SMALL_OR_JP["parameters"], "expression": expression}}
    )
    with pytest.raises(ConfigError) as exc:
        load_program(path)
    msg = str(exc.value)
    assert str(path) in msg and f"  {field}" in msg and reason in msg, msg


def test_a_required_column_the_query_declares_is_known_and_a_column_outside_the_batch_is_not(tmp_path):
    spec = {**SMALL_OR_JP, "parameters": {"expression": "order_value > 10", "reason": "small in local currency"}}
    with pytest.raises(ConfigError, match="unknown column 'order_value'"):
        load_program(refunds_with(tmp_path, spec))
    program = load_program(refunds_with(tmp_path, spec, required={"order_value": "number"}))
    assert "order_value" in columns_judged(program.ordered_filters())


@pytest.mark.parametrize(
    "spec, reason",
    [
        ({"parameters": {"expression": "order_value_usd > 1"}}, "parameters.reason: Field required"),
        ({"parameters": {**SMALL_OR_JP["parameters"], "because": "x"}}, "parameters.because: Extra inputs"),
        ({"rule": "expresion"}, "unknown business-rule filter 'expresion'"),
        ({"rule": "trust"}, "unknown business-rule filter 'trust'"),
        ({"type": "eligibility"}, "rule is for business-rule filters"),
        ({"filterId": "issue-severity"}, "filterIds must be unique"),
    ],
)
def test_a_bad_expression_filter_spec_fails_at_load(tmp_path, spec, reason):
    with pytest.raises(ConfigError) as exc:
        load_program(refunds_with(tmp_path, {**SMALL_OR_JP, **spec}))
    assert reason in str(exc.value), str(exc.value)


@pytest.mark.parametrize(
    "expression",
    [
        "abs(order_value_usd - 50) < 10 AND round(lifetime_value_usd, 0) >= 100",
        "coalesce(customer_complaints, 0) = 0 AND NOT item_condition IN ('lost', 'stolen')",
        "starts_with(order_id, 'O-') OR ends_with(order_id, 'x') OR contains(order_id, '-')",
        "regexp_matches(customer_id, '^[a-z]') AND length(trim(upper(customer_id))) > 1",
        "date_diff('day', delivery_date, delivery_date) = 0 AND delivery_date >= DATE '2026-01-01'",
        "CASE WHEN item_condition = 'damaged' THEN true ELSE delay_days > 2 END",
        "CAST(delay_days AS DOUBLE) / greatest(order_value_usd, 1) < 1 AND least(delay_days, 3) >= 0",
        "nullif(item_condition, '') IS NOT NULL AND concat(customer_id, order_id) <> '' AND floor(1.5) < ceil(1.5)",
        "substring(customer_id, 1, 1) <> '' AND try_cast(order_id AS INTEGER) IS NULL",
    ],
)
def test_each_allowed_function_runs_in_the_chain(tmp_path, expression):
    """What sqlglot writes back for every allowed function runs in DuckDB over a real batch."""
    spec = {**SMALL_OR_JP, "parameters": {"expression": expression, "reason": "r"}}
    program = load_program(refunds_with(tmp_path, spec))
    assert isinstance(program, ProgramConfig)
    _, eligible, _ = run_chain(program, [row("ok", order_value_usd=55.0)])
    assert eligible == ["ok"]


def test_what_runs_is_the_sql_written_back_from_the_checked_tree():
    parsed = parse_expression("order_value_usd >= 25 -- a comment\n AND marketplace <> 'JP'")
    assert parsed.sql == "order_value_usd >= 25 AND marketplace <> 'JP'"
    assert parsed.columns == ("order_value_usd", "marketplace")
    with pytest.raises(ExpressionError, match="is empty"):
        parse_expression("  ")
    assert KNOWN_CUSTOMER not in parsed.columns
