{#-
  An integer arriving as text, or NULL when the text is not an integer ('n/a', '', '3 days', '2.5').
  Never raises: the platform rejects such rows with a reason instead of the build failing.
  A plain try_cast would round '2.5' to 3, so the text must look like an integer first.
-#}
{% macro parse_integer(column) -%}
    {{ return(adapter.dispatch('parse_integer', 'engage')(column)) }}
{%- endmacro %}

{% macro default__parse_integer(column) -%}
    case when regexp_like(trim({{ column }}), '^[+-]?[0-9]+$')
         then try_cast(trim({{ column }}) as integer) end
{%- endmacro %}

{% macro duckdb__parse_integer(column) -%}
    case when regexp_full_match(trim({{ column }}), '[+-]?[0-9]+')
         then try_cast(trim({{ column }}) as integer) end
{%- endmacro %}
