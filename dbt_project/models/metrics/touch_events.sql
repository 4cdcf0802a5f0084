-- One row per touch the platform sent, with the first time the provider reported it delivered, opened, clicked,
-- bounced, complained about or unsubscribed from (NULL when never), and what the touch cost (channel_unit_costs).
with events as (
    select
        touch_ref,
        min(case when event_type = 'delivered' then occurred_at end) as delivered_at,
        min(case when event_type = 'open' then occurred_at end) as opened_at,
        min(case when event_type = 'click' then occurred_at end) as clicked_at,
        min(case when event_type = 'bounce' then occurred_at end) as bounced_at,
        min(case when event_type = 'complaint' then occurred_at end) as complained_at,
        min(case when event_type = 'unsubscribe' then occurred_at end) as unsubscribed_at,
        min(case when event_type = 'failed' then occurred_at end) as failed_at
    from {{ ref('stg_platform_outcomes') }}
    group by touch_ref
)

select
    t.touch_ref,
    t.offer_id,
    t.customer_id,
    t.program_id,
    t.partition_key,
    t.segment,
    t.channel,
    t.sent_at,
    t.contact_date,
    e.delivered_at,
    e.opened_at,
    e.clicked_at,
    e.bounced_at,
    e.complained_at,
    e.unsubscribed_at,
    e.failed_at,
    coalesce(u.unit_cost_usd, 0.0) as cost_usd
from {{ ref('contact_history') }} as t
left join events as e on e.touch_ref = t.touch_ref
left join {{ ref('channel_unit_costs') }} as u on u.channel = t.channel
