"""Warehouse connectors: the `WarehouseResource` interface (`base`) and its implementations.

- local: `duckdb.DuckDBWarehouse`, the embedded DuckDB file (with `connect_duckdb`, the lock-aware opener);
- production: `snowflake.SnowflakeWarehouse` (dagster-snowflake) and `athena.AthenaWarehouse` (boto3's Athena
  client, for sources that live in S3).

Import each class from its module.
"""
