select
    offer_id,
    customer_id,
    program_id,
    offer_type,
    offer_date,
    order_id,
    amount_usd,
    loaded_at
from {{ ref('stg_offer_history') }}
