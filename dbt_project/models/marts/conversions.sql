{{ config(materialized='view') }}
-- Every conversion the business's systems recorded (stg_conversions): what the send-time "only if not converted"
-- check reads (resources.customer_state.WarehouseConversions), attribution and lift count.
-- A view: a conversion loaded (or simulated) since the last warehouse build counts at the next send.
select
    conversion_id,
    customer_id,
    conversion_type,
    occurred_at,
    value_usd,
    order_id,
    offer_code,
    program_id,
    simulated,
    loaded_at
from {{ ref('stg_conversions') }}
