select
    cart_id,
    customer_id,
    created_at,
    abandoned_at,
    lower(status) as status,
    cart_value,
    upper(currency) as currency,
    item_count,
    abandonment_reason,
    purchased_at,
    expired_at,
    loaded_at
from {{ source('raw', 'carts') }}
