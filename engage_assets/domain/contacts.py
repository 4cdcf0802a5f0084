"""What the platform knows of how to reach a customer: the contact columns of `marts.customers`."""

from __future__ import annotations

CHANNEL_CONSENT = {"email": "email_opt_in", "sms": "sms_opt_in", "push": "push_opt_in", "phone": "phone_opt_in"}
CONTACT_COLUMNS = (
    "customer_id",
    "customer_name",
    "email",
    "phone",
    "marketplace",
    "time_zone",
    "account_status",
    "email_opt_in",
    "sms_opt_in",
    "push_opt_in",
    "phone_opt_in",
    "marketing_opt_out",
)
