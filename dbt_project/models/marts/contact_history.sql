{{ config(materialized='view') }}
-- Every touch the platform sent, one row each, with the provider's message id outcomes are reported under.
-- A view over the platform's history files: current as soon as a delivery run has written them.
select
    touch_ref,
    offer_id,
    customer_id,
    program_id,
    partition_key,
    subject_id,
    touch_id,
    channel,
    channel_id,
    template_id,
    segment,
    offer_type,
    amount_usd,
    provider_id,
    sent_at,
    contact_date,
    loaded_at
from {{ ref('stg_platform_contacts') }}
