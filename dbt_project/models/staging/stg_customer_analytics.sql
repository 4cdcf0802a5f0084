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
from {{ source('raw', 'customer_analytics') }}
