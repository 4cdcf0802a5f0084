{% macro platform_source(table_name, columns, source_name='platform') -%}
{#- The rows of one table of a platform-written source (`platform`, or `source_name`: `business`), as `columns`
    ({name: type}).  Locally (DuckDB) the source reads Parquet files in place and, until a run has written the first one, is empty
    with a single `empty` column: a typed empty row set, unioned by name, gives every column its type either way. -#}
{%- if target.type == 'duckdb' %}
select {{ columns.keys() | join(', ') }}
from (
    select
    {%- for name, type in columns.items() %}
        cast(null as {{ type }}) as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
    where false
    union all by name
    select * from {{ source(source_name, table_name) }}
)
{%- else %}
select {{ columns.keys() | join(', ') }}
from {{ source(source_name, table_name) }}
{%- endif %}
{%- endmacro %}
