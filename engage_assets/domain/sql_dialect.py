"""The one dialect layer: SQL the platform writes once, in DuckDB's dialect, as each warehouse reads it.

sqlglot parses the DuckDB text and writes it in the warehouse's dialect (`snowflake`, `trino` for Athena):
`datediff('day', a, b)`, `date - INTERVAL n DAY`, `isnan`, string concatenation and casts come out as that engine
spells them, and `:name` bind parameters stay `:name` (each backend binds them in its own style,
`resources.warehouse.base.bind_style`).  Text that is already in the warehouse's own dialect (the connector's
query from the YAML, a relation the warehouse names) is never rewritten: it stands in the template as a marker
table (`verbatim`) and is put back after the transpile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlglot
from sqlglot import exp

DIALECTS = ("duckdb", "snowflake", "trino")


def literal(text: str) -> str:
    """A SQL string literal (the dialect layer re-escapes it for the warehouse: a backslash is text everywhere)."""
    return "'" + text.replace("'", "''") + "'"


def labels(case_sql: str, values: Sequence[str], dialect: str) -> str:
    """A CASE that yields one of a few known texts (a rejection's filter and reason), as DuckDB's ENUM of them: a
    10M-row partition's rejected rows are written with one small integer a row instead of a string built per row
    (-0.3 s of the chain's 2.6 s).  Read back, the column is text.  Other dialects: the CASE as it is."""
    if dialect != "duckdb" or not values:
        return case_sql
    return f"CAST({case_sql} AS ENUM({', '.join(literal(v) for v in sorted(set(values)))}))"


def marker(name: str) -> str:
    """A stand-in for verbatim text: `SELECT * FROM <marker>` in the template."""
    return f"__engage_verbatim_{name}__"


def _snowflake_nan(node: exp.Expression) -> exp.Expression:
    # Snowflake has no IS_NAN: NaN equals itself there ('NaN'::FLOAT = 'NaN'::FLOAT is true).
    if isinstance(node, exp.IsNan):
        return exp.EQ(this=node.this, expression=exp.cast(exp.Literal.string("NaN"), "FLOAT"))
    return node


def to_dialect(sql: str, dialect: str, verbatim: Mapping[str, str] | None = None) -> str:
    """`sql` (DuckDB) in `dialect`, each `SELECT * FROM <marker(name)>` replaced by `verbatim[name]` as written."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r} (one of {', '.join(DIALECTS)})")
    if dialect != "duckdb":
        tree = sqlglot.parse_one(sql, read="duckdb")
        if dialect == "snowflake":
            tree = tree.transform(_snowflake_nan)
        sql = tree.sql(dialect=dialect)
    for name, text in (verbatim or {}).items():
        stand_in = f"SELECT * FROM {marker(name)}"
        if stand_in not in sql:
            raise ValueError(f"the SQL lost its {name} marker in the {dialect} dialect")
        sql = sql.replace(stand_in, text)
    return sql
