-- One row per churn event (customer_id, churn_date), the newest load.
select *
from {{ ref('stg_churned_customers') }}
qualify row_number() over (partition by customer_id, churn_date order by loaded_at desc) = 1
