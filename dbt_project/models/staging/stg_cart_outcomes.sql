select
    cart_id,
    customer_id,
    abandoned_at,
    purchased_within_7d,
    true_purchase_prob,
    loaded_at
from {{ source('raw', 'cart_outcomes') }}
