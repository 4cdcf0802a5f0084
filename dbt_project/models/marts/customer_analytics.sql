select
    snapshot_date,
    customer_id,
    engagement_score,
    engagement_trend,
    engagement_change,
    login_frequency,
    historical_avg,
    purchase_frequency,
    days_since_last_purchase,
    support_tickets,
    feature_usage,
    subscription_status,
    lifetime_value_usd,
    subscription_tenure_months,
    loaded_at
from {{ ref('stg_customer_analytics') }}
-- Stored in snapshot and customer order: a run's statements that read a range of customers (the source stage's
-- buckets) read only that range's row groups (DuckDB's zone maps; clustering does the same on Snowflake).
order by snapshot_date, customer_id
