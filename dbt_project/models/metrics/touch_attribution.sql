-- Conversions attributed to the touches that preceded them: for each conversion, the customer's touches sent at
-- most `attribution_window_days` before it (sent_at <= converted_at < sent_at + window) -- of the programs its type
-- is a conversion of (program_conversion_types), and only of the conversion's own program when the business system
-- names one -- and of those the latest (last touch) and the earliest (first touch).
-- A conversion no touch preceded within the window is not attributed (it is organic).
with touches as (
    select touch_ref, offer_id, customer_id, program_id, channel, segment, sent_at
    from {{ ref('contact_history') }}
),

candidates as (
    select
        c.conversion_id,
        c.customer_id,
        c.conversion_type,
        c.value_usd,
        c.occurred_at as converted_at,
        t.touch_ref,
        t.offer_id,
        t.program_id,
        t.channel,
        t.segment,
        t.sent_at as touched_at,
        row_number() over (
            partition by c.conversion_id order by t.sent_at desc, t.touch_ref desc
        ) as rank_last,
        row_number() over (
            partition by c.conversion_id order by t.sent_at asc, t.touch_ref asc
        ) as rank_first
    from {{ ref('stg_conversions') }} as c
    inner join touches as t
        on t.customer_id = c.customer_id
        and t.sent_at <= c.occurred_at
        and c.occurred_at < t.sent_at + interval '{{ var("attribution_window_days") }} days'
        and (c.program_id is null or c.program_id = t.program_id)
    inner join {{ ref('program_conversion_types') }} as k
        on k.program_id = t.program_id and k.conversion_type = c.conversion_type
)

{% for model, rank in [('last_touch', 'rank_last'), ('first_touch', 'rank_first')] %}
select
    conversion_id,
    customer_id,
    program_id,
    touch_ref,
    offer_id,
    channel,
    segment,
    '{{ model }}' as attribution_model,
    conversion_type,
    value_usd,
    converted_at,
    touched_at
from candidates
where {{ rank }} = 1
{% if not loop.last %}union all{% endif %}
{% endfor %}
