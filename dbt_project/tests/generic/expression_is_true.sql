{#- Fails on every row of `model` where `expression` (SQL over its columns) is false; rows where it is NULL pass
    (a metric with nothing to measure yet is NULL, not wrong).  Narrow the rows with the test's `where` config. -#}
{% test expression_is_true(model, expression) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
