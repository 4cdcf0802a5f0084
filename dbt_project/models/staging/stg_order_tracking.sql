select
    order_id,
    customer_id,
    delivery_date,
    expected_delivery_date,
    {{ parse_integer('delay_days') }} as delay_days,
    -- kept so a rejected row can say what the tracking system sent
    delay_days as delay_days_raw,
    order_value,
    upper(currency) as currency,
    item_condition,
    customer_complaints,
    refundable,
    loaded_at
from {{ source('raw', 'order_tracking') }}
