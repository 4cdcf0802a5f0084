-- The funnel per program, segment and channel: candidates stored (the holdout included) → offered (not held out)
-- → sent → delivered → opened → clicked → converted.
-- channel = 'all' rows count candidates (an offer is sent if any of its touches was, converted if its customer
-- converted in the conversion window: offer_conversions); a channel's rows count that channel's touches, and its
-- `converted` the conversions attributed to them by last touch.  segment = 'all' rows total the program's segments.
-- Every program of the spec has its ('all', 'all') row, zeros until it has candidates.
with offers as (
    select * from {{ ref('offer_conversions') }}
),

touches as (
    select * from {{ ref('touch_events') }}
),

per_offer as (
    select
        offer_id,
        max(case when sent_at is not null then 1 else 0 end) as sent,
        max(case when delivered_at is not null then 1 else 0 end) as delivered,
        max(case when opened_at is not null then 1 else 0 end) as opened,
        max(case when clicked_at is not null then 1 else 0 end) as clicked
    from touches
    group by offer_id
),

offer_facts as (
    select
        o.program_id,
        coalesce(o.segment, 'unknown') as segment,
        o.holdout,
        coalesce(p.sent, 0) as sent,
        coalesce(p.delivered, 0) as delivered,
        coalesce(p.opened, 0) as opened,
        coalesce(p.clicked, 0) as clicked,
        case when o.converted and not o.holdout then 1 else 0 end as converted
    from offers as o
    left join per_offer as p on p.offer_id = o.offer_id
),

segments as (
    select program_id, segment, count(*) as candidates, count(case when not holdout then 1 end) as offered,
           sum(sent) as sent, sum(delivered) as delivered, sum(opened) as opened, sum(clicked) as clicked,
           sum(converted) as converted
    from offer_facts
    group by program_id, segment
),

programs as (
    select distinct program_id from {{ ref('spec_metric_figures') }}
    union
    select distinct program_id from segments
),

program_totals as (
    select p.program_id, 'all' as segment,
           coalesce(sum(s.candidates), 0) as candidates, coalesce(sum(s.offered), 0) as offered,
           coalesce(sum(s.sent), 0) as sent, coalesce(sum(s.delivered), 0) as delivered,
           coalesce(sum(s.opened), 0) as opened, coalesce(sum(s.clicked), 0) as clicked,
           coalesce(sum(s.converted), 0) as converted
    from programs as p
    left join segments as s on s.program_id = p.program_id
    group by p.program_id
),

attributed as (
    select touch_ref, count(*) as conversions
    from {{ ref('touch_attribution') }}
    where attribution_model = 'last_touch' and conversion_type not in ('credit_redeemed', 'code_redeemed')
    group by touch_ref
),

channel_touches as (
    select
        t.program_id,
        coalesce(t.segment, 'unknown') as segment,
        t.channel,
        count(*) as sent,
        count(t.delivered_at) as delivered,
        count(t.opened_at) as opened,
        count(t.clicked_at) as clicked,
        coalesce(sum(a.conversions), 0) as converted
    from touches as t
    left join attributed as a on a.touch_ref = t.touch_ref
    group by t.program_id, coalesce(t.segment, 'unknown'), t.channel
),

channel_rows as (
    select program_id, segment, channel, sent, delivered, opened, clicked, converted from channel_touches
    union all
    select program_id, 'all' as segment, channel, sum(sent), sum(delivered), sum(opened), sum(clicked),
           sum(converted)
    from channel_touches
    group by program_id, channel
),

denominators as (
    select program_id, segment, candidates, offered from segments
    union all
    select program_id, segment, candidates, offered from program_totals
),

funnel as (
    select program_id, segment, 'all' as channel, candidates, offered, sent, delivered, opened, clicked, converted
    from segments
    union all
    select program_id, segment, 'all' as channel, candidates, offered, sent, delivered, opened, clicked, converted
    from program_totals
    union all
    select c.program_id, c.segment, c.channel, coalesce(d.candidates, 0), coalesce(d.offered, 0),
           c.sent, c.delivered, c.opened, c.clicked, c.converted
    from channel_rows as c
    left join denominators as d on d.program_id = c.program_id and d.segment = c.segment
)

select
    program_id,
    segment,
    channel,
    cast(candidates as integer) as candidates,
    cast(offered as integer) as offered,
    cast(sent as integer) as sent,
    cast(delivered as integer) as delivered,
    cast(opened as integer) as opened,
    cast(clicked as integer) as clicked,
    cast(converted as integer) as converted
from funnel
