-- The spec's metrics by name, one row per program, metric and dimension, beside the figure the spec asserts
-- (seed spec_metric_figures, with its section).  metric_value is NULL where there is nothing to measure yet (no
-- candidates, no touches): a report says "no data" rather than 0.  Every figure the spec asserts has its row.
-- The definitions, in the spec's words, are in program_metrics.yml.
with lift as (
    select * from {{ ref('holdout_lift') }}
),

treated as (
    select
        program_id,
        count(*) as treated_n,
        count(case when converted then 1 end) as conversions,
        sum(case when converted then coalesce(lifetime_value_usd, 0.0) else 0.0 end) as converted_ltv_usd,
        avg(lifetime_value_usd) as avg_ltv_usd,
        sum(case when converted then conversion_value_usd else 0.0 end) as conversion_value_usd,
        count(case when redeemed then 1 end) as redeemers,
        sum(redeemed_value_usd) as redeemed_value_usd,
        sum(amount_usd) as issued_usd,
        sum(case when offer_type = 'full' then amount_usd else 0.0 end) as full_refunds_usd
    from {{ ref('offer_conversions') }}
    where not holdout
    group by program_id
),

contact_cost as (
    select program_id, sum(cost_usd) as contact_cost_usd
    from {{ ref('touch_events') }}
    group by program_id
),

facts as (
    select
        l.program_id,
        l.lift,
        l.control_rate,
        t.treated_n,
        t.conversions,
        t.converted_ltv_usd,
        t.conversion_value_usd,
        t.redeemers,
        t.redeemed_value_usd,
        t.issued_usd,
        l.lift * l.treated_n as churn_prevented,
        -- Refunds are paid when issued; a credit costs only once redeemed ("net cost, after unredeemed credits").
        -- A discount is netted from the revenue it brings, as the spec's cart example does: contacts only.
        case when t.treated_n > 0 or c.contact_cost_usd is not null then
            coalesce(c.contact_cost_usd, 0.0)
            + case when l.program_id = 'proactive-refunds'
                   then coalesce(t.full_refunds_usd, 0.0) + coalesce(t.redeemed_value_usd, 0.0) else 0.0 end
        end as campaign_cost_usd,
        case l.program_id
            when 'proactive-refunds' then l.lift * l.treated_n * t.avg_ltv_usd
            when 'abandoned-cart-recovery' then t.conversion_value_usd
            else t.converted_ltv_usd
        end as revenue_usd
    from lift as l
    left join treated as t on t.program_id = l.program_id
    left join contact_cost as c on c.program_id = l.program_id
),

program_rows as (
    select program_id, 'conversion_rate' as metric_name, 'all' as dimension,
           cast(conversions as double) / nullif(treated_n, 0) as metric_value
    from facts
    union all
    select program_id, 'lift', 'all', lift from facts
    union all
    select program_id, 'campaign_cost_usd', 'all', campaign_cost_usd from facts
    union all
    select program_id, 'cost_per_conversion', 'all', campaign_cost_usd / nullif(conversions, 0) from facts
    union all
    select program_id,
           case when program_id in ('proactive-refunds', 'churn-prevention') then 'revenue_saved_usd'
                else 'revenue_recovered_usd' end,
           'all', revenue_usd
    from facts
    union all
    select program_id, 'roi', 'all', 100.0 * revenue_usd / nullif(campaign_cost_usd, 0) from facts
    union all
    select program_id, 'churn_prevented', 'all', churn_prevented
    from facts where program_id in ('proactive-refunds', 'churn-prevention')
    union all
    select program_id, 'churn_reduction_rate', 'all', lift / nullif(1 - control_rate, 0)
    from facts where program_id = 'churn-prevention'
    union all
    select program_id, 'credit_redemption_rate', 'all', cast(redeemers as double) / nullif(treated_n, 0)
    from facts where program_id = 'proactive-refunds'
    union all
    select program_id, 'refunds_issued_usd', 'all', issued_usd from facts where program_id = 'proactive-refunds'
    union all
    select program_id, 'credits_redeemed_usd', 'all', redeemed_value_usd
    from facts where program_id = 'proactive-refunds'
    union all
    select program_id, 'revenue_per_conversion_usd', 'all', conversion_value_usd / nullif(conversions, 0)
    from facts where program_id = 'abandoned-cart-recovery'
),

-- The segment rates the spec names (satisfaction recovery by impact level, retention by risk level, win-back rate
-- by likelihood), and the same rate over all segments.
segment_rows as (
    select s.program_id, s.metric_name, s.dimension,
           cast(count(case when o.converted then 1 end) as double) / nullif(count(o.offer_id), 0) as metric_value
    from {{ ref('metric_segments') }} as s
    left join {{ ref('offer_conversions') }} as o
        on o.program_id = s.program_id and o.segment = s.segment and not o.holdout
    group by s.program_id, s.metric_name, s.dimension
    union all
    select f.program_id, m.metric_name, 'all', cast(f.conversions as double) / nullif(f.treated_n, 0)
    from facts as f
    inner join (select distinct program_id, metric_name from {{ ref('metric_segments') }}) as m
        on m.program_id = f.program_id
),

-- A channel whose provider reports nothing (phone and in-app have no delivery receipts) has no delivery, open or
-- click rate: NULL, not 0 %.
reported as (
    select program_id, channel
    from {{ ref('touch_events') }}
    group by program_id, channel
    having count(coalesce(delivered_at, opened_at, clicked_at, bounced_at, complained_at, unsubscribed_at,
                          failed_at)) > 0
),

channel_rows as (
    {% for name, numerator, denominator in [
        ('delivery_rate', 'delivered', 'sent'), ('open_rate', 'opened', 'sent'),
        ('click_rate', 'clicked', 'sent'), ('conversion_rate', 'converted', 'offered')] %}
    select f.program_id, '{{ name }}' as metric_name, 'channel=' || f.channel as dimension,
           {% if name == 'conversion_rate' -%}
           cast(f.{{ numerator }} as double) / nullif(f.{{ denominator }}, 0)
           {%- else -%}
           case when r.channel is not null then cast(f.{{ numerator }} as double) / nullif(f.{{ denominator }}, 0) end
           {%- endif %} as metric_value
    from {{ ref('program_funnel') }} as f
    left join reported as r on r.program_id = f.program_id and r.channel = f.channel
    where f.segment = 'all' and f.channel <> 'all'
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

measured as (
    select * from program_rows
    union all
    select * from segment_rows
    union all
    select * from channel_rows
),

spec as (
    select * from {{ ref('spec_metric_figures') }}
)

select
    coalesce(m.program_id, s.program_id) as program_id,
    coalesce(m.metric_name, s.metric_name) as metric_name,
    coalesce(m.dimension, s.dimension) as dimension,
    cast(m.metric_value as double) as metric_value,
    cast(s.spec_figure as double) as spec_figure,
    coalesce(s.unit, case
        when coalesce(m.metric_name, s.metric_name) = 'roi' then 'percent'
        when coalesce(m.metric_name, s.metric_name) = 'churn_prevented' then 'count'
        when coalesce(m.metric_name, s.metric_name) like '%_usd'
            or coalesce(m.metric_name, s.metric_name) = 'cost_per_conversion' then 'usd'
        else 'rate' end) as unit,
    s.spec_period,
    s.spec_reference
from measured as m
full outer join spec as s
    on s.program_id = m.program_id and s.metric_name = m.metric_name and s.dimension = m.dimension
