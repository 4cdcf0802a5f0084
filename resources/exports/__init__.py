"""Exports: the `ExportResource` interface (`base`) and its implementations.

- local: `local.LocalParquetExports`, Parquet files under ENGAGE_HOME exposed as DuckDB views;
- production: `s3.S3ParquetExports`, Parquet objects in S3 catalogued as partitioned Glue tables (Athena).

Import each class from its module.
"""
