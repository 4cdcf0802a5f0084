-- The tracking export re-sends orders: keep one row per order_id, the newest load.
select *
from {{ ref('stg_order_tracking') }}
qualify row_number() over (partition by order_id order by loaded_at desc, delay_days_raw desc) = 1
