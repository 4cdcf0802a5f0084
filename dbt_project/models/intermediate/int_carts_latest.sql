-- A cart is re-sent when its state changes (abandoned, then purchased or expired): keep its newest load.
select *
from {{ ref('stg_carts') }}
qualify row_number() over (
    partition by cart_id
    order by loaded_at desc, coalesce(purchased_at, expired_at, abandoned_at) desc, status
) = 1
