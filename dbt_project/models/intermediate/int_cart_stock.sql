-- Per cart: its distinct products and whether each is in stock in the newest inventory (an unknown product is
-- not in stock).
with inventory as (
    select product_id, in_stock
    from {{ ref('stg_inventory') }}
    qualify row_number() over (partition by product_id order by loaded_at desc, updated_at desc) = 1
),

lines as (
    select distinct cart_id, product_id
    from {{ ref('stg_cart_items') }}
)

select
    l.cart_id,
    cast(count(*) as integer) as distinct_products,
    cast(count(*) filter (where not coalesce(i.in_stock, false)) as integer) as out_of_stock_items,
    bool_and(coalesce(i.in_stock, false)) as all_items_in_stock
from lines as l
left join inventory as i
    on i.product_id = l.product_id
group by l.cart_id
