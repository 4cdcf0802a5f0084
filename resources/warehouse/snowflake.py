"""The production warehouse: Snowflake through dagster-snowflake's `SnowflakeResource`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field

from engage_assets.domain.pushdown import PARTITION_COLUMN
from resources.warehouse.base import StageTarget, WarehouseResource, bind_lists, bind_style, used_params


def snowflake_bound(sql: str, params: Mapping[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """The SQL in the connector's `pyformat` style and its values (a list: one parameter per value)."""
    sql, params = bind_lists(sql, params, "expand")
    _, names = bind_style(sql, "pyformat")
    values = used_params(names, params)
    if not values:
        return sql, None
    # With parameters the connector formats the query with `%`: a literal % (LIKE 'a%') must be doubled.
    query, _ = bind_style(sql.replace("%", "%%"), "pyformat")
    return query, values


class SnowflakeWarehouse(WarehouseResource):
    """Snowflake through dagster-snowflake's `SnowflakeResource` (its connection handling, auth and config).

    The fields are the SnowflakeResource fields a connector needs; secrets come from `dg.EnvVar`:

        SnowflakeWarehouse(account=dg.EnvVar("SNOWFLAKE_ACCOUNT"), user=dg.EnvVar("SNOWFLAKE_USER"),
                           password=dg.EnvVar("SNOWFLAKE_PASSWORD"), database="ENGAGE", schema="MARTS",
                           warehouse="ENGAGE_WH", role="ENGAGE_READER")

    The SnowflakeResource is built per query rather than held as a nested resource field because importing
    dagster_snowflake (Snowpark, snowflake.core) takes seconds, and every local run process imports this
    module (through `resources.by_env`) without ever touching Snowflake. Parameters are bound in the
    connector's default `pyformat` style.
    """

    account: str = Field(description="Snowflake account identifier.")
    user: str = Field(description="User login name.")
    password: str | None = Field(default=None, description="Password (use dg.EnvVar).")
    private_key: str | None = Field(default=None, description="PEM private key for key-pair auth (use dg.EnvVar).")
    private_key_password: str | None = Field(default=None, description="Passphrase of the private key.")
    database: str | None = Field(default=None, description="Default database.")
    schema_: str | None = Field(default=None, alias="schema", description="Default schema.")
    warehouse: str | None = Field(default=None, description="Virtual warehouse to run queries on.")
    role: str | None = Field(default=None, description="Role to assume.")
    stage_schema: str = Field(
        default="ENGAGE_STAGES",
        description="Schema (existing, writable by the role) of the push-down's stage tables: per program "
        "`<group>__source_candidates` and `<group>__rejections`, one partition per `engage_partition_key`.",
    )
    connection_args: dict[str, Any] | None = Field(
        default=None,
        description="Further snowflake.connector.connect arguments (SnowflakeResource's "
        "additional_snowflake_connection_args), e.g. session_parameters.",
    )

    dialect: ClassVar[str] = "snowflake"

    def snowflake_resource(self) -> Any:
        """The dagster-snowflake resource for this config (imported on first use)."""
        # Deferred on purpose, not to dodge a cycle: importing dagster_snowflake costs ~6 s, and every local run
        # process imports this module through resources.by_env without ever using Snowflake.
        from dagster_snowflake import SnowflakeResource

        config: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "password": self.password,
            "private_key": self.private_key,
            "private_key_password": self.private_key_password,
            "database": self.database,
            "schema": self.schema_,
            "warehouse": self.warehouse,
            "role": self.role,
            "additional_snowflake_connection_args": self.connection_args,
        }
        return SnowflakeResource(**{k: v for k, v in config.items() if v is not None})

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run the query and fetch the result as Arrow; column names lower-cased (Snowflake upper-cases them).

        Lower-casing makes a program's column names the same on DuckDB and Snowflake.
        """
        query, values = snowflake_bound(sql, params)
        with self.snowflake_resource().get_connection() as conn:
            cursor = conn.cursor()
            try:
                cursor.execute(query, values or None)
                table = cursor.fetch_arrow_all(force_return_table=True)
            finally:
                cursor.close()
        return table.rename_columns([name.lower() for name in table.column_names])

    def stage_table(self, target: StageTarget) -> str:
        """The program's table for `target`: `<stage_schema>.<GROUP>__SOURCE_CANDIDATES` or `…__REJECTIONS`."""
        return f"{self.stage_schema}.{target.group}__{target.name}".upper()

    def _scope(self, target: StageTarget) -> str:
        """The partition's rows of the stage table (and, for rejections, of the stage that rejected them)."""
        stage = "" if target.stage is None else f" AND stage = '{target.stage}'"
        return f"{PARTITION_COLUMN} = :partition_key{stage}"

    def write_rows(self, sql: str, params: Mapping[str, Any] | None, target: StageTarget) -> str:
        """Snowflake writes the rows into the program's stage table: the partition's previous rows deleted and the
        new ones inserted in one transaction (a re-run replaces; a reader sees one or the other)."""
        table = self.stage_table(target)
        rows = f"SELECT r.*, CAST(:partition_key AS VARCHAR) AS {PARTITION_COLUMN} FROM ({sql}) AS r"
        self.execute_many(
            [
                (f"CREATE TABLE IF NOT EXISTS {table} AS {rows} LIMIT 0", params),
                ("BEGIN", None),
                (f"DELETE FROM {table} WHERE {self._scope(target)}", params),
                (f"INSERT INTO {table} {rows}", params),
                ("COMMIT", None),
            ]
        )
        return table

    def rows_relation(self, target: StageTarget) -> str:
        """The partition's rows of the stage table (its `engage_partition_key` column included)."""
        return f"(SELECT * FROM {self.stage_table(target)} WHERE {self._scope(target)})"

    def execute_many(self, statements: Sequence[tuple[str, Mapping[str, Any] | None]]) -> None:
        """Run statements that return no rows, in order, on one connection (a transaction spans them)."""
        with self.snowflake_resource().get_connection() as conn:
            cursor = conn.cursor()
            try:
                for sql, params in statements:
                    query, values = snowflake_bound(sql, params)
                    cursor.execute(query, values)
            finally:
                cursor.close()
