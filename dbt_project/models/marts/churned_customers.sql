select
    customer_id,
    churn_date,
    churn_reason,
    lifetime_value_usd,
    last_purchase_date,
    subscription_tier,
    engagement_score,
    engagement_history,
    subscription_tenure_months,
    win_back_attempts,
    feature_requests,
    competitor_activity,
    account_status,
    loaded_at
from {{ ref('int_churned_customers_deduplicated') }}
