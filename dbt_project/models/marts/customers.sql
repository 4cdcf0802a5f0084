select
    customer_id,
    customer_name,
    email,
    phone,
    marketplace,
    time_zone,
    subscription_tier,
    signup_date,
    lifetime_value_usd,
    orders_last_365d,
    orders_last_365d as order_frequency,
    monthly_revenue_usd,
    satisfaction_history,
    complaint_history,
    discount_sensitivity,
    account_status,
    email_opt_in,
    sms_opt_in,
    push_opt_in,
    phone_opt_in,
    marketing_opt_out,
    updated_at
from {{ ref('stg_customers') }}
-- A customer extract loaded twice: one row per customer, the newest state wins.
qualify row_number() over (partition by customer_id order by updated_at desc) = 1
-- Stored in customer order: a range of customers is a range of row groups (see customer_analytics).
order by customer_id
