select
    product_id,
    name as product_name,
    category,
    price_usd,
    in_stock,
    updated_at,
    loaded_at
from {{ source('raw', 'inventory') }}
