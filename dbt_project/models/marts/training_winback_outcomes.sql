select
    customer_id,
    offer_date,
    lifetime_value_usd,
    churn_reason,
    subscription_tenure_months,
    engagement_history,
    discount_sensitivity,
    feature_requests,
    competitor_activity,
    discount_percent,
    returned,
    redeemed,
    true_p_returned,
    true_p_redeemed,
    loaded_at
from {{ ref('stg_winback_outcomes') }}
