select
    upper(currency) as currency,
    usd_per_unit,
    loaded_at
from {{ source('raw', 'fx_rates') }}
