-- Deduplicated orders with their value in USD (NULL when the currency has no rate).
select
    o.order_id,
    o.customer_id,
    o.delivery_date,
    o.expected_delivery_date,
    o.delay_days,
    o.delay_days_raw,
    o.order_value,
    o.currency,
    round(o.order_value * fx.usd_per_unit, 2) as order_value_usd,
    o.item_condition,
    o.customer_complaints,
    o.refundable,
    o.loaded_at
from {{ ref('int_order_tracking_deduplicated') }} as o
left join {{ ref('int_fx_rates_latest') }} as fx
    on fx.currency = o.currency
