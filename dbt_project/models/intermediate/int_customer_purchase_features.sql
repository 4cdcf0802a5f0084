-- Per customer, the purchase-intent features and trust signals, defined once for the carts mart (scoring) and
-- training_cart_outcomes (training), so the model sees the same definitions in both.
with payment as (
    select customer_id, payment_method_on_file
    from {{ ref('stg_customer_payment_methods') }}
    qualify row_number() over (partition by customer_id order by loaded_at desc) = 1
),

email as (
    select customer_id, emails_sent_90d, emails_opened_90d
    from {{ ref('stg_email_engagement') }}
    qualify row_number() over (partition by customer_id order by loaded_at desc) = 1
)

select
    c.customer_id,
    c.orders_last_365d as purchase_history,
    round(12 * c.monthly_revenue_usd / greatest(c.orders_last_365d, 1), 2) as avg_order_value_usd,
    cast(e.emails_opened_90d as double) / nullif(e.emails_sent_90d, 0) as email_engagement,
    c.discount_sensitivity,
    coalesce(p.payment_method_on_file, false) as payment_method_on_file
from {{ ref('stg_customers') }} as c
left join payment as p
    on p.customer_id = c.customer_id
left join email as e
    on e.customer_id = c.customer_id
