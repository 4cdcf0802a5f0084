-- One row per cart (its newest state): value in local currency and USD, stock, and the customer context the
-- abandoned-cart program's filters (trust, cart value, inventory) and purchase-intent model read.
select
    c.cart_id,
    c.customer_id,
    c.status,
    c.created_at,
    c.abandoned_at,
    c.purchased_at,
    c.expired_at,
    c.abandonment_reason,
    c.currency,
    c.cart_value_local,
    c.cart_value_usd,
    c.cart_value_usd as cart_value,
    c.item_count,
    coalesce(s.all_items_in_stock, false) as all_items_in_stock,
    coalesce(s.out_of_stock_items, 0) as out_of_stock_items,
    cu.marketplace,
    cu.account_status,
    cu.marketing_opt_out,
    f.payment_method_on_file,
    f.purchase_history,
    f.avg_order_value_usd,
    f.email_engagement,
    f.discount_sensitivity,
    c.loaded_at
from {{ ref('int_carts_usd') }} as c
left join {{ ref('int_cart_stock') }} as s
    on s.cart_id = c.cart_id
left join {{ ref('stg_customers') }} as cu
    on cu.customer_id = c.customer_id
left join {{ ref('int_customer_purchase_features') }} as f
    on f.customer_id = c.customer_id
