"""The filter chain's rejection codes computed with Arrow compute instead of a DuckDB statement, for small batches.

`filters.rejection_code_sql` gives, per row, the first check of the chain it fails (code 2k: check k is FALSE,
2k+1: it is NULL), or NULL when every check keeps it.  Planning that statement costs DuckDB 2-4 ms of CPU whatever
the batch holds, which is most of an abandoned-cart event's decision; evaluating the same checks on a few rows with
`pyarrow.compute` costs tens of microseconds.  `chain_codes` parses each check's SQL (sqlglot, DuckDB dialect) into
Arrow calls with SQL's three-valued logic:

- a column, a number / string / boolean literal;
- `=`, `<>`, `<`, `<=`, `>`, `>=` (NULL if either side is), `BETWEEN`;
- `x IN (literals)` / `NOT IN` (NULL when x is; the chain's lists hold no NULL);
- `NOT`, `AND`, `OR` (Kleene), `coalesce(...)`, parentheses.

Anything else (a function, a cast, arithmetic, a `CASE`), a type Arrow will not compare as DuckDB would (a temporal
or decimal column), or a check whose result is not boolean gives None: the caller runs the DuckDB statement.  The
tests check the codes against DuckDB's on random rows with NULLs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

from engage_assets.domain.duck import cursor
from engage_assets.domain.filters import CompiledFilter, rejection_code_sql

ARROW_MAX_ROWS = 10_000  # up to this many rows the checks run in Arrow (a larger batch: one DuckDB pass)
Evaluator = Callable[[pa.Table], Any]  # an Arrow array or scalar
_COMPARE: dict[type[exp.Binary], Callable[..., Any]] = {
    exp.EQ: pc.equal,
    exp.NEQ: pc.not_equal,
    exp.LT: pc.less,
    exp.LTE: pc.less_equal,
    exp.GT: pc.greater,
    exp.GTE: pc.greater_equal,
}


class Unsupported(ValueError):
    """SQL outside the subset this evaluates."""


def _plain(t: pa.DataType) -> bool:
    """A column type Arrow compares as DuckDB does: integers, floats, booleans, strings."""
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_string(t)


def _column(name: str) -> Evaluator:
    def column(table: pa.Table) -> Any:
        values = table.column(name)
        if not _plain(values.type):
            raise Unsupported(f"column {name!r} of type {values.type}")
        return values.combine_chunks()

    return column


def _literal(node: exp.Literal) -> Evaluator:
    if node.is_string:
        value: Any = pa.scalar(node.this, pa.string())
    else:
        value = _number(node.this)
    return lambda table: value


def _number(text: str) -> Any:
    """A numeric literal as an Arrow scalar: int64 when it is an integer, else float64."""
    return pa.scalar(int(text)) if text.lstrip("-").isdigit() else pa.scalar(float(text))


def _in(node: exp.In) -> Evaluator:
    if (
        node.args.get("query")
        or node.args.get("unnest")
        or not all(isinstance(e, exp.Literal) for e in node.expressions)
    ):
        raise Unsupported("IN without a literal list")
    subject = _compile(node.this)
    literals = [_literal(e)(None) for e in node.expressions]

    def is_in(table: pa.Table) -> Any:
        x = subject(table)
        if not isinstance(x, pa.Array):
            raise Unsupported("IN on a constant")
        values = pa.array([v.as_py() for v in literals], x.type)  # ArrowInvalid if they do not cast: unsupported
        return pc.if_else(pc.is_valid(x), pc.is_in(x, value_set=values), pa.scalar(None, pa.bool_()))

    return is_in


def _binary(fn: Callable[..., Any], node: exp.Binary) -> Evaluator:
    left, right = _compile(cast(exp.Expression, node.left)), _compile(cast(exp.Expression, node.right))
    return lambda table: fn(left(table), right(table))


def _between(node: exp.Between) -> Evaluator:
    x, low, high = _compile(node.this), _compile(node.args["low"]), _compile(node.args["high"])
    return lambda t: pc.and_kleene(pc.greater_equal(x(t), low(t)), pc.less_equal(x(t), high(t)))


def _coalesce(node: exp.Coalesce) -> Evaluator:
    parts = [_compile(node.this), *(_compile(e) for e in node.expressions)]
    return lambda table: pc.coalesce(*(p(table) for p in parts))


def _compile(node: exp.Expression) -> Evaluator:  # long: one branch per supported node type
    """An evaluator of `node`, or `Unsupported`."""
    if isinstance(node, exp.Paren):
        return _compile(node.this)
    if isinstance(node, exp.Column) and not node.table:
        return _column(node.name)
    if isinstance(node, exp.Boolean):
        value = pa.scalar(bool(node.this))
        return lambda table: value
    if isinstance(node, exp.Literal):
        return _literal(node)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        negative = _number(f"-{node.this.this}")
        return lambda table: negative
    if isinstance(node, exp.Not):
        inner = _compile(node.this)
        return lambda table: pc.invert(inner(table))
    if isinstance(node, exp.And):
        return _binary(pc.and_kleene, node)
    if isinstance(node, exp.Or):
        return _binary(pc.or_kleene, node)
    for kind, compare in _COMPARE.items():
        if isinstance(node, kind):
            return _binary(compare, node)
    if isinstance(node, exp.In):
        return _in(node)
    if isinstance(node, exp.Between):
        return _between(node)
    if isinstance(node, exp.Coalesce):
        return _coalesce(node)
    raise Unsupported(type(node).__name__)


@lru_cache(maxsize=256)
def compile_check(keep_sql: str) -> Evaluator | None:
    """The check's evaluator, or None when its SQL is outside the subset (module docstring)."""
    try:
        return _compile(cast(exp.Expression, sqlglot.parse_one(keep_sql, read="duckdb")))
    except (Unsupported, sqlglot.errors.ParseError):
        return None


def chain_codes(chain: Sequence[CompiledFilter], table: pa.Table) -> np.ndarray | None:
    """Per row, `rejection_code_sql(chain)`'s code (-1 where it is NULL: the row is kept), or None when a check
    cannot be evaluated here (the caller runs the SQL)."""
    checks = [c for f in chain for c in f.checks]
    evaluators = [compile_check(c.keep_sql) for c in checks]
    if any(e is None for e in evaluators):
        return None
    codes = np.full(table.num_rows, -1, dtype=np.int32)
    try:
        for k, evaluate in enumerate(evaluators):
            keep = evaluate(table)  # type: ignore[misc]
            if not isinstance(keep, pa.Array) or not pa.types.is_boolean(keep.type) or len(keep) != table.num_rows:
                return None
            pending = codes < 0
            failed = pc.fill_null(pc.invert(keep), False).to_numpy(zero_copy_only=False)
            unknown = pc.is_null(keep).to_numpy(zero_copy_only=False)
            codes[pending & failed] = 2 * k
            codes[pending & unknown] = 2 * k + 1
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, Unsupported):
        return None
    return codes


def sql_codes(chain: Sequence[CompiledFilter], table: pa.Table) -> np.ndarray:
    """`rejection_code_sql(chain)` per row in one DuckDB pass (-1: kept).  Only the rejected rows' positions and
    codes leave DuckDB, so a partition of 10 million rows is never copied."""
    n = table.num_rows
    codes = np.full(n, -1, dtype=np.int32)
    con = cursor()  # a cursor on the shared in-process database (`domain.duck`)
    try:
        # Registering is zero-copy and DuckDB reads only the columns the conditions name.
        con.register("batch", table.append_column("__engage_pos", pa.array(np.arange(n, dtype=np.int64))))
        failed = con.sql(
            f"SELECT __engage_pos AS pos, f FROM (SELECT __engage_pos, {rejection_code_sql(chain)} AS f "
            "FROM batch) WHERE f IS NOT NULL"
        ).to_arrow_table()
    finally:
        con.close()
    codes[failed.column("pos").to_numpy()] = failed.column("f").to_numpy()
    return codes


def first_failed_codes(chain: Sequence[CompiledFilter], table: pa.Table) -> np.ndarray:
    """Per row, the code of the first check it fails (-1: kept): in Arrow for a small batch the subset covers,
    else in DuckDB."""
    codes = chain_codes(chain, table) if table.num_rows <= ARROW_MAX_ROWS else None
    return sql_codes(chain, table) if codes is None else codes
