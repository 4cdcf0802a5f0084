-- One row per assignment (every stored candidate, the holdout included) with whether its customer converted in
-- the conversion window.  The window is the same for the treated and the held-out candidates of a partition: from
-- the assigned date to `conversion_window_days` after the day of the partition's first send (after the assigned
-- date while nothing was sent), so the holdout lift compares like with like even when touches go out days later.
with assignments as (
    select * from {{ ref('stg_platform_assignments') }}
),

first_send as (
    select program_id, partition_key, min(sent_at) as first_sent_at
    from {{ ref('contact_history') }}
    group by program_id, partition_key
),

windows as (
    select
        a.*,
        cast(a.assigned_date as timestamp) as window_start,
        cast(greatest(a.assigned_date, coalesce(cast(f.first_sent_at as date), a.assigned_date)) as timestamp)
            + interval '{{ var("conversion_window_days") }} days' as window_end
    from assignments as a
    left join first_send as f
        on f.program_id = a.program_id and f.partition_key = a.partition_key
),

-- A conversion counts for its customer's assignments of the programs its type is a conversion of
-- (program_conversion_types), unless the business system names another program (a redeemed code knows its program).
matched as (
    select
        w.offer_id,
        c.conversion_id,
        c.conversion_type,
        c.occurred_at,
        c.value_usd
    from windows as w
    inner join {{ ref('stg_conversions') }} as c
        on c.customer_id = w.customer_id
        and c.occurred_at >= w.window_start
        and c.occurred_at < w.window_end
        and (c.program_id is null or c.program_id = w.program_id)
    inner join {{ ref('program_conversion_types') }} as k
        on k.program_id = w.program_id and k.conversion_type = c.conversion_type
),

per_offer as (
    select
        offer_id,
        count(*) as conversions,
        -- A redeemed credit or code is the offer used within a purchase: its value is what the offer cost, not
        -- revenue, and it is not another conversion.
        sum(case when conversion_type not in ('credit_redeemed', 'code_redeemed') then value_usd else 0 end)
            as conversion_value_usd,
        sum(case when conversion_type in ('credit_redeemed', 'code_redeemed') then value_usd else 0 end)
            as redeemed_value_usd,
        count(case when conversion_type in ('credit_redeemed', 'code_redeemed') then 1 end) as redemptions,
        min(occurred_at) as first_converted_at
    from matched
    group by offer_id
)

select
    w.offer_id,
    w.program_id,
    w.partition_key,
    w.customer_id,
    w.segment,
    w.offer_type,
    coalesce(w.holdout, false) as holdout,
    coalesce(w.amount_usd, 0.0) as amount_usd,
    w.assigned_date,
    w.window_start,
    w.window_end,
    coalesce(p.conversions, 0) > 0 as converted,
    cast(coalesce(p.conversions, 0) as integer) as conversions,
    coalesce(p.conversion_value_usd, 0.0) as conversion_value_usd,
    coalesce(p.redemptions, 0) > 0 as redeemed,
    coalesce(p.redeemed_value_usd, 0.0) as redeemed_value_usd,
    p.first_converted_at,
    cu.lifetime_value_usd
from windows as w
left join per_offer as p on p.offer_id = w.offer_id
left join {{ ref('customers') }} as cu on cu.customer_id = w.customer_id
