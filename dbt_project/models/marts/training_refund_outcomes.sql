select
    issue_id,
    customer_id,
    issue_date,
    delay_days,
    order_value_usd,
    item_damaged,
    lifetime_value_usd,
    satisfaction_history,
    complaint_history,
    order_frequency,
    dissatisfied,
    churned_90d,
    true_p_dissatisfied,
    true_p_churn,
    loaded_at
from {{ ref('stg_refund_outcomes') }}
