-- The newest state of every cart with its value in USD (NULL when the currency has no rate).
select
    c.cart_id,
    c.customer_id,
    c.created_at,
    c.abandoned_at,
    c.status,
    c.cart_value as cart_value_local,
    c.currency,
    round(c.cart_value * fx.usd_per_unit, 2) as cart_value_usd,
    c.item_count,
    c.abandonment_reason,
    c.purchased_at,
    c.expired_at,
    c.loaded_at
from {{ ref('int_carts_latest') }} as c
left join {{ ref('int_fx_rates_latest') }} as fx
    on fx.currency = c.currency
