{{ config(materialized='table') }}
-- The warehouse's own offer history (raw.offer_history): an offer loaded twice is one offer (the look-backs and caps
-- count offers, not loads), the newest load wins.  A table: marts.offer_history, a view every program run reads,
-- unions it with the platform's own offers without deduplicating the raw loads again.
select *
from {{ ref('stg_offer_history') }}
qualify row_number() over (partition by offer_id order by loaded_at desc) = 1
