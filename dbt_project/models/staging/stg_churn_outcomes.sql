select
    customer_id,
    snapshot_date,
    engagement_score,
    login_frequency,
    purchase_frequency,
    support_tickets,
    lifetime_value_usd,
    subscription_tenure_months,
    discount_sensitivity,
    churned_90d,
    accepted_offer,
    true_p_churn,
    true_p_accept,
    loaded_at
from {{ source('raw', 'churn_outcomes') }}
