"""What the platform knows of how to reach a customer: the contact columns of `marts.customers`.

Derived from the channel registry (`engage_assets.domain.channels`): every channel's address and consent column,
plus the columns every channel needs (name, locale, account status, the marketing opt-out).
"""

from __future__ import annotations

from engage_assets.domain.channels import CHANNEL_SPECS, consent_columns

# Channel type → its opt-in column (in-app has none: it is shown only to a customer who opens the app).
CHANNEL_CONSENT: dict[str, str] = consent_columns()


def _unique(columns: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(columns))


# `customer_id` first: readers that already know the id select `CONTACT_COLUMNS[1:]`.
CONTACT_COLUMNS: tuple[str, ...] = _unique(
    ["customer_id", "customer_name"]
    + [s.address_column for s in CHANNEL_SPECS if s.address_column]
    + ["marketplace", "time_zone", "account_status"]
    + [s.consent_column for s in CHANNEL_SPECS if s.consent_column]
    + ["marketing_opt_out"]
)
