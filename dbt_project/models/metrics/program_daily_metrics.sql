-- Each program's day (UTC), as the spec's 23:59 aggregation counts it: touches sent that day, provider events
-- that day (first delivered / opened / clicked report of a touch), conversions that day attributed to the program
-- by last touch, what the day's touches cost (channel_unit_costs; proactive refunds also the full refunds issued on
-- their assigned date) and what the attributed conversions brought.
with touches as (
    select * from {{ ref('touch_events') }}
),

sent as (
    select program_id, contact_date as metric_date, count(*) as sent, sum(cost_usd) as cost_usd
    from touches group by 1, 2
),

{% for event in ['delivered', 'opened', 'clicked'] %}
{{ event }} as (
    select program_id, cast({{ event }}_at as date) as metric_date, count(*) as {{ event }}
    from touches where {{ event }}_at is not null group by 1, 2
),
{% endfor %}

refunds as (
    select program_id, assigned_date as metric_date, sum(amount_usd) as cost_usd
    from {{ ref('offer_conversions') }}
    where program_id = 'proactive-refunds' and offer_type = 'full' and not holdout
    group by 1, 2
),

converted as (
    select program_id, cast(converted_at as date) as metric_date, count(*) as converted,
           sum(value_usd) as revenue_usd
    from {{ ref('touch_attribution') }}
    where attribution_model = 'last_touch' and conversion_type not in ('credit_redeemed', 'code_redeemed')
    group by 1, 2
),

days as (
    select program_id, metric_date from sent
    union select program_id, metric_date from delivered
    union select program_id, metric_date from opened
    union select program_id, metric_date from clicked
    union select program_id, metric_date from refunds
    union select program_id, metric_date from converted
),

daily as (
    select
        d.metric_date,
        d.program_id,
        coalesce(s.sent, 0) as sent,
        coalesce(dl.delivered, 0) as delivered,
        coalesce(o.opened, 0) as opened,
        coalesce(cl.clicked, 0) as clicked,
        coalesce(cv.converted, 0) as converted,
        coalesce(s.cost_usd, 0.0) + coalesce(r.cost_usd, 0.0) as cost_usd,
        coalesce(cv.revenue_usd, 0.0) as revenue_usd
    from days as d
    left join sent as s on s.program_id = d.program_id and s.metric_date = d.metric_date
    left join delivered as dl on dl.program_id = d.program_id and dl.metric_date = d.metric_date
    left join opened as o on o.program_id = d.program_id and o.metric_date = d.metric_date
    left join clicked as cl on cl.program_id = d.program_id and cl.metric_date = d.metric_date
    left join refunds as r on r.program_id = d.program_id and r.metric_date = d.metric_date
    left join converted as cv on cv.program_id = d.program_id and cv.metric_date = d.metric_date
)

select
    metric_date,
    program_id,
    cast(sent as integer) as sent,
    cast(delivered as integer) as delivered,
    cast(opened as integer) as opened,
    cast(clicked as integer) as clicked,
    cast(converted as integer) as converted,
    cast(cost_usd as double) as cost_usd,
    cast(revenue_usd as double) as revenue_usd,
    100.0 * revenue_usd / nullif(cost_usd, 0) as roi
from daily
