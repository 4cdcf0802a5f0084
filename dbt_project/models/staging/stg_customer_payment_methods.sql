select
    customer_id,
    payment_method_on_file,
    payment_method_type,
    loaded_at
from {{ source('raw', 'customer_payment_methods') }}
