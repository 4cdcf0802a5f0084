"""The `expression` filter rule's condition: a SQL predicate over the batch's columns, parsed and checked at load.

A program adds a rule without Python by writing a condition (`order_value_usd >= 25 AND marketplace <> 'JP'`).
It is parsed with sqlglot (DuckDB's dialect, the engine the chain runs on, `domain.duck`) and must be one boolean
expression over the row's own columns: not a statement (SELECT, DDL, `;`), no subquery, parameter, table name or
clock, and only the functions of `ALLOWED_FUNCTIONS` — the chain runs in a DuckDB that must never read a file or
another table.  What runs is the SQL sqlglot writes back from the checked tree, never the text as written.

`parse_expression` checks the structure (a FilterSpec alone); `check_against` then checks the columns and the result
type against the program's batch (`domain.source_columns`), binding the condition in DuckDB over typed columns: an
unknown column, a function given the wrong types, or a condition that gives a number instead of TRUE/FALSE is an
error at load, never at 2 AM.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from engage_assets.domain.duck import cursor

DIALECT = "duckdb"

# The functions a condition may call, by the name a config writes, and the sqlglot node each parses to.
ALLOWED_FUNCTIONS: dict[str, type[exp.Expr]] = {
    "abs": exp.Abs,
    "ceil": exp.Ceil,
    "floor": exp.Floor,
    "round": exp.Round,
    "least": exp.Least,
    "greatest": exp.Greatest,
    "coalesce": exp.Coalesce,
    "nullif": exp.Nullif,
    "lower": exp.Lower,
    "upper": exp.Upper,
    "length": exp.Length,
    "trim": exp.Trim,
    "substring": exp.Substring,
    "concat": exp.Concat,
    "starts_with": exp.StartsWith,
    "ends_with": exp.EndsWith,
    "contains": exp.Contains,
    "regexp_matches": exp.RegexpLike,
    "date_diff": exp.DateDiff,
    "cast": exp.Cast,
    "try_cast": exp.TryCast,
}
# Logic, comparisons and predicates: they give TRUE, FALSE or NULL.
_PREDICATES: tuple[type[exp.Expr], ...] = (exp.And, exp.Or, exp.Not, exp.Is, exp.In, exp.Between, exp.Like, exp.ILike)
_PREDICATES += (exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
# Everything else a condition may hold: columns, literals, arithmetic, CASE, type names (in a CAST).
_ALLOWED = _PREDICATES + tuple(ALLOWED_FUNCTIONS.values())
_ALLOWED += (exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.Tuple, exp.Case, exp.If)
_ALLOWED += (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.DataType, exp.DataTypeParam)
# Roots that can give TRUE/FALSE (DuckDB's binding decides for the ones that may not: a column, CASE, COALESCE).
_CONDITIONS = _PREDICATES + (exp.Boolean, exp.StartsWith, exp.EndsWith, exp.Contains, exp.RegexpLike, exp.Column)
_CONDITIONS += (exp.Coalesce, exp.Case, exp.If, exp.Cast, exp.TryCast)
# How the config's column types (`ColumnType`) are bound in DuckDB for the type check.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


class ExpressionError(ValueError):
    """A filter expression that cannot run: the message says why, for people."""


@dataclass(frozen=True)
class FilterExpression:
    """A checked condition: the DuckDB SQL written back from its tree, and the columns it reads (first use order)."""

    sql: str
    columns: tuple[str, ...]


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _problem(node: exp.Expr) -> str | None:
    """Why `node` may not appear in a condition, or None."""
    if isinstance(node, exp.Query | exp.Subquery):
        return "a subquery (SELECT …) is not allowed: a filter reads only its own row's columns"
    if isinstance(node, exp.Placeholder | exp.Parameter):
        return f"parameters ({node.sql(dialect=DIALECT)}) are not allowed: write the value"
    if isinstance(node, exp.Star):
        return "* is not allowed: name the columns"
    if isinstance(node, exp.Column) and node.table:
        return f"column {node.sql(dialect=DIALECT)}: name columns without a table (the batch is the only one)"
    if isinstance(node, exp.Var) and isinstance(node.parent, exp.DateDiff):
        return None  # the unit of date_diff('day', a, b)
    if isinstance(node, _ALLOWED):
        return None
    if isinstance(node, exp.Func):
        return (
            f"function {_function_name(node)!r} is not allowed in a filter expression; "
            f"allowed: {', '.join(sorted(ALLOWED_FUNCTIONS))}"
        )
    return f"{node.sql(dialect=DIALECT)!r} is not allowed in a filter expression"


def _single_tree(text: str) -> exp.Expr:
    """The one expression `text` holds; ExpressionError for a syntax error, `;` or a statement."""
    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(text)
        trees = [t for t in sqlglot.parse(text, dialect=DIALECT) if t is not None]
    except SqlglotError as e:
        raise ExpressionError(f"not valid SQL: {str(e).splitlines()[0]}") from None
    if not trees:
        raise ExpressionError("is empty: write a condition, e.g. order_value_usd >= 25")
    if any(t.token_type == TokenType.SEMICOLON for t in tokens) or len(trees) != 1:
        raise ExpressionError("one condition only: no ';' and no second statement")
    root = trees[0]
    if not isinstance(root, exp.Condition):  # SELECT, DDL, DML, PRAGMA, ATTACH, COPY, …
        kind = str(root.this if isinstance(root, exp.Command) else root.key).upper()
        raise ExpressionError(
            f"{kind} is a statement, not a condition: write a boolean expression over the batch's columns, "
            "e.g. order_value_usd >= 25 AND marketplace <> 'JP'"
        )
    return root


@lru_cache(maxsize=512)
def parse_expression(text: str) -> FilterExpression:
    """Parse and check a condition's structure (module docstring); ExpressionError says what is wrong."""
    root = _single_tree(text)
    for node in root.walk():
        problem = _problem(node)
        if problem:
            raise ExpressionError(problem)
    core = root
    while isinstance(core, exp.Paren):
        core = core.this
    if not isinstance(core, _CONDITIONS):
        raise ExpressionError(
            f"{root.sql(dialect=DIALECT)!r} gives a value, not TRUE/FALSE: write a condition, e.g. a comparison"
        )
    columns = tuple(dict.fromkeys(c.name for c in root.find_all(exp.Column)))
    return FilterExpression(root.sql(dialect=DIALECT, comments=False), columns)


def _unknown_column(name: str, known: Mapping[str, str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown column {name!r}{hint}; the batch has: {', '.join(sorted(known))}"


def check_against(expression: FilterExpression, types: Mapping[str, str]) -> None:
    """The condition over a batch with these columns (name → `ColumnType`): every column it reads exists, and
    DuckDB binds it to BOOLEAN.  ExpressionError otherwise."""
    unknown = [c for c in expression.columns if c not in types]
    if unknown:
        raise ExpressionError("; ".join(_unknown_column(c, types) for c in unknown))
    typed = [f"CAST(NULL AS {DUCKDB_TYPES.get(types[c], 'VARCHAR')}) AS {_quote(c)}" for c in expression.columns]
    sql = f"SELECT ({expression.sql}) AS keep FROM (SELECT {', '.join(typed) or '1 AS one'}) AS batch"
    result_type = _bound_type(sql)
    if result_type.startswith("!"):
        raise ExpressionError(f"DuckDB cannot evaluate it: {result_type[1:]}")
    if result_type != "BOOLEAN":
        raise ExpressionError(f"gives {result_type}, not TRUE/FALSE: write a condition, e.g. a comparison")


def _bound_type(sql: str) -> str:
    """The type DuckDB binds the query's one column to, or `!` and DuckDB's error.  Nothing of DuckDB's outlives
    the call (no error or cursor held by a traceback: nanobind reports those as leaks at exit)."""
    con = cursor()
    try:
        return str(con.sql(sql).types[0])
    except duckdb.Error as e:
        return "!" + str(e).splitlines()[0]
    finally:
        con.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
