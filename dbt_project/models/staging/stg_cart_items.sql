select
    cart_id,
    product_id,
    product_name,
    category,
    price,
    quantity,
    loaded_at
from {{ source('raw', 'cart_items') }}
