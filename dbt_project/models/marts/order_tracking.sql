select
    order_id,
    customer_id,
    delivery_date,
    expected_delivery_date,
    delay_days,
    delay_days_raw,
    order_value,
    currency,
    order_value_usd,
    item_condition,
    customer_complaints,
    refundable,
    loaded_at
from {{ ref('int_order_tracking_usd') }}
