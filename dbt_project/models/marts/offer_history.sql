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
-- An offer loaded twice is one offer (the look-backs and caps count offers, not loads): the newest load wins.
qualify row_number() over (partition by offer_id order by loaded_at desc) = 1
