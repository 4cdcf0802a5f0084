-- One rate per currency, the newest load.
select currency, usd_per_unit, loaded_at
from {{ ref('stg_fx_rates') }}
qualify row_number() over (partition by currency order by loaded_at desc) = 1
