select
    customer_id,
    emails_sent_90d,
    emails_opened_90d,
    emails_clicked_90d,
    loaded_at
from {{ source('raw', 'email_engagement') }}
