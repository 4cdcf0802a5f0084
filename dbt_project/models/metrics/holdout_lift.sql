-- Holdout lift per program: the treated candidates' conversion rate minus the held-out (control) candidates', with
-- a 95 % interval from the normal approximation to the difference of two proportions,
--   lift ± 1.959964 · sqrt(p_t (1 − p_t) / n_t + p_c (1 − p_c) / n_c).
-- One row per program of the spec (zero counts and NULL rates until it has assignments on both sides).
with programs as (
    select distinct program_id from {{ ref('spec_metric_figures') }}
),

counts as (
    select
        program_id,
        count(case when not holdout then 1 end) as treated_n,
        count(case when not holdout and converted then 1 end) as treated_conversions,
        count(case when holdout then 1 end) as control_n,
        count(case when holdout and converted then 1 end) as control_conversions
    from {{ ref('offer_conversions') }}
    group by program_id
),

rates as (
    select
        p.program_id,
        cast(coalesce(c.treated_n, 0) as integer) as treated_n,
        cast(coalesce(c.treated_conversions, 0) as integer) as treated_conversions,
        cast(coalesce(c.control_n, 0) as integer) as control_n,
        cast(coalesce(c.control_conversions, 0) as integer) as control_conversions,
        cast(c.treated_conversions as double) / nullif(c.treated_n, 0) as treated_rate,
        cast(c.control_conversions as double) / nullif(c.control_n, 0) as control_rate
    from programs as p
    left join counts as c on c.program_id = p.program_id
),

lift as (
    select
        *,
        treated_rate - control_rate as lift,
        sqrt(treated_rate * (1 - treated_rate) / treated_n + control_rate * (1 - control_rate) / control_n)
            as lift_se
    from rates
)

select
    program_id,
    treated_n,
    treated_conversions,
    treated_rate,
    control_n,
    control_conversions,
    control_rate,
    lift,
    lift - 1.959964 * lift_se as lift_ci_low,
    lift + 1.959964 * lift_se as lift_ci_high
from lift
