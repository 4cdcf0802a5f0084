-- Labelled abandoned carts for purchase-intent-v4: the model's features under their exact names (the same
-- definitions the carts mart serves), the label, and the generating probability.
with outcomes as (
    select *
    from {{ ref('stg_cart_outcomes') }}
    qualify row_number() over (partition by cart_id order by loaded_at desc) = 1
)

select
    o.cart_id,
    o.customer_id,
    o.abandoned_at,
    f.purchase_history,
    c.cart_value_usd as cart_value,
    f.email_engagement,
    f.discount_sensitivity,
    o.purchased_within_7d,
    o.true_purchase_prob,
    o.loaded_at
from outcomes as o
left join {{ ref('int_carts_usd') }} as c
    on c.cart_id = o.cart_id
left join {{ ref('int_customer_purchase_features') }} as f
    on f.customer_id = o.customer_id
