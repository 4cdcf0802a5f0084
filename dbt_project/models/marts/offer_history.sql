{{ config(materialized='view') }}
-- Every offer a customer received, by any program: the warehouse's history (raw.offer_history, deduplicated) and the
-- platform's own, so the eligibility look-back, the frequency caps and win-back attempts count what the platform
-- itself did: its batch programs' offers, and a contact whose candidate wrote no offer (the reactive programs'
-- candidates are stored on the event path) as that candidate's offer, dated its first send.
-- A view: a program's next run sees the offers its last run made, with no warehouse build in between.
with platform_offers as (
    select * from {{ ref('stg_platform_offers') }}
),

contact_offers as (
    select
        c.offer_id,
        min(c.customer_id) as customer_id,
        min(c.program_id) as program_id,
        min(c.offer_type) as offer_type,
        min(c.contact_date) as offer_date,
        max(c.amount_usd) as amount_usd,
        max(c.loaded_at) as loaded_at
    from {{ ref('stg_platform_contacts') }} as c
    where not exists (select 1 from platform_offers as o where o.offer_id = c.offer_id)
    group by c.offer_id
)

select offer_id, customer_id, program_id, offer_type, offer_date, order_id, amount_usd, loaded_at,
       'warehouse' as source
from {{ ref('int_offer_history_deduplicated') }}
union all
select offer_id, customer_id, program_id, offer_type, offer_date, order_id, amount_usd, loaded_at,
       'platform' as source
from platform_offers
union all
select offer_id, customer_id, program_id, offer_type, offer_date, cast(null as varchar) as order_id, amount_usd,
       loaded_at, 'platform' as source
from contact_offers
