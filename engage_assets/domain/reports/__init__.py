"""Reports people look at (#11, item 6): the metric models dbt builds (`dbt_project/models/metrics`), read as Arrow
(`data`), drawn as Vega-Lite charts rendered to PNG without a browser (`charts`), and written as Markdown for the
Dagster UI and as standalone HTML files (`render`)."""
