"""The channel registry: one `ChannelSpec` per channel type, the one place that says what a channel is.

Everything channel-shaped is derived from `CHANNELS`:

- the program config: the channel `type` values and one config model per type that accepts exactly the spec's
  fields (`engage_assets.domain.config.channels`), so a typo such as `delayHourz` fails loading, naming the field;
- contacts and consent: `engage_assets.domain.contacts` (`CONTACT_COLUMNS`, `CHANNEL_CONSENT`), read by
  `engage_assets.domain.conditions` and `resources.customer_state`;
- contact pressure: opt-in and address columns, channels counted toward caps, channels quiet hours apply to
  (`engage_assets.domain.pressure`);
- planning: which channels follow the program's first `sendTime` (`engage_assets.domain.plan`);
- templates: which config texts fill which part, which parts a channel renders (`engage_assets.domain.templates`);
- delivery: the Dagster resource key of the channel's sender, or the engagement-store queue that serves it
  (`engage_assets.assets.delivery`).

A new channel type (say WhatsApp) touches, after this registry:

1. this file: one `ChannelSpec` (consent and address columns, caps, quiet hours, parts, config fields, resource key);
2. `resources/channels/`: its local and its production implementation of `DeliveryChannel` (and, if a new address
   kind needs a format check, `ADDRESS_PATTERNS` in `engage_assets.domain.pressure`);
3. `resources/by_env.py`: the two implementations under the spec's `resource_key` (local and prod dicts);
4. its messages, for each program that uses it: config texts, or templates under `engage_assets/domain/
   message_templates/<program>/<channel>/` or `program_configs/templates/…` (`domain.template_sources`);
5. the warehouse, only if it brings a new consent or address column: the dbt staging model and customers mart
   (`dbt_project/models/staging/stg_customers.sql`, `dbt_project/models/marts/customers.sql` and its `.yml`) and
   the demo generator's customer columns (`engage_assets/demo/datagen/population.py`): `CONTACT_COLUMNS` is read from the mart;
6. the program YAMLs that use it.
A channel the engagement store serves (`store_queue`) reuses the call-task queue or the inbox; a third kind of queue
would also need the store's table and the serving API's routes.  Nothing else: the config model, consent, pressure,
planning, templates and the delivery asset follow the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# Conditions any channel may carry: they are about the candidate, not the channel (plan.py applies them).
CONDITION_FIELDS = frozenset(
    {"highImpactOnly", "criticalRiskOnly", "highScoreOnly", "onlyIfNotConverted", "onlyIfCartAbandoned"}
)
# Elapsed-time delays after the channel's base time: any channel may wait (a call task three days later too).
DELAY_FIELDS = frozenset({"delayDays", "delayHours", "delayMinutes"})
# A local send time (10:00 in the customer's zone) makes sense for messages that land on a customer's device.
SEND_TIME_FIELDS = frozenset({"sendTime", "timezone"})

StoreQueue = Literal["call_tasks", "inbox"]


@dataclass(frozen=True)
class ChannelSpec:
    """What the platform knows of one channel type.

    `texts` maps a config field that holds inline text (`{field}` placeholders) to the template part it fills;
    `timing` and `settings` are the other config fields the type accepts (with `templateId` and the conditions).
    A channel is delivered either by the Dagster resource named `resource_key` (a `DeliveryChannel`), or, when
    `store_queue` is set, by the engagement store's call-task queue or in-app inbox (served by the API).
    """

    type: str
    consent_column: str | None
    address_column: str | None
    counts_toward_caps: bool
    quiet_hours: bool
    parts: tuple[str, ...]
    texts: Mapping[str, str]
    timing: frozenset[str]
    settings: frozenset[str] = frozenset()
    conditions: frozenset[str] = CONDITION_FIELDS
    requires_subject: bool = False
    resource_key: str | None = None
    store_queue: StoreQueue | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if (self.resource_key is None) == (self.store_queue is None):
            raise ValueError(f"channel {self.type!r}: exactly one of resource_key and store_queue")
        unknown = set(self.texts.values()) - set(self.parts)
        if unknown:
            raise ValueError(f"channel {self.type!r}: config texts fill parts it does not render: {sorted(unknown)}")

    @property
    def config_fields(self) -> frozenset[str]:
        """Every field this type's `config` accepts."""
        return frozenset({"templateId"}) | self.timing | self.conditions | frozenset(self.texts) | self.settings

    @property
    def takes_send_time(self) -> bool:
        """Whether a channel of this type has a local send time (and so follows the program's first `sendTime`)."""
        return "sendTime" in self.timing


CHANNEL_SPECS: tuple[ChannelSpec, ...] = (
    ChannelSpec(
        type="email",
        consent_column="email_opt_in",
        address_column="email",
        counts_toward_caps=True,
        quiet_hours=True,
        parts=("subject", "txt", "html"),
        texts={"subject": "subject", "body": "txt"},
        timing=SEND_TIME_FIELDS | DELAY_FIELDS,
        settings=frozenset({"personalization", "includeDiscount"}),
        requires_subject=True,
        resource_key="email_channel",
        description="E-mail: SMTP capture locally, SES in production.",
    ),
    ChannelSpec(
        type="sms",
        consent_column="sms_opt_in",
        address_column="phone",
        counts_toward_caps=True,
        quiet_hours=True,
        parts=("txt",),
        texts={"message": "txt"},
        timing=SEND_TIME_FIELDS | DELAY_FIELDS,
        resource_key="sms_channel",
        description="SMS: an outbox locally, SNS in production.",
    ),
    ChannelSpec(
        type="push",
        consent_column="push_opt_in",
        address_column=None,  # the device token lives with the push provider, not in the customers mart
        counts_toward_caps=True,
        quiet_hours=True,
        parts=("subject", "txt"),
        texts={"title": "subject", "body": "txt"},
        timing=SEND_TIME_FIELDS | DELAY_FIELDS,
        resource_key="push_channel",
        description="Push notification: an outbox locally, SNS in production.",
    ),
    ChannelSpec(
        type="phone",
        consent_column="phone_opt_in",
        address_column="phone",
        counts_toward_caps=True,
        quiet_hours=False,  # call tasks wait for an account manager's working hours anyway
        parts=("txt",),
        texts={},
        timing=frozenset({"scheduleWithin"}) | DELAY_FIELDS,
        settings=frozenset({"callType", "scriptId"}),
        store_queue="call_tasks",
        description="Phone: a call task for account managers, served by the API.",
    ),
    ChannelSpec(
        type="in-app",
        consent_column=None,  # shown only when the customer opens the app: no separate consent
        address_column=None,
        counts_toward_caps=False,  # an inbox entry interrupts no one
        quiet_hours=False,
        parts=("subject", "txt"),
        texts={"title": "subject", "body": "txt"},
        timing=frozenset({"displayDuration"}) | DELAY_FIELDS,
        settings=frozenset({"messageType"}),
        store_queue="inbox",
        description="In-app: an inbox entry shown for displayDuration days, served by the API.",
    ),
)

CHANNELS: dict[str, ChannelSpec] = {spec.type: spec for spec in CHANNEL_SPECS}
CHANNEL_TYPES: tuple[str, ...] = tuple(CHANNELS)


def channel_spec(channel_type: str) -> ChannelSpec:
    """The spec of a channel type; KeyError names the known types."""
    try:
        return CHANNELS[channel_type]
    except KeyError:
        raise KeyError(f"unknown channel type {channel_type!r}; known: {', '.join(CHANNEL_TYPES)}") from None


def consent_columns() -> dict[str, str]:
    """Channel type → the customers mart's opt-in column (types without one are left out)."""
    return {t: s.consent_column for t, s in CHANNELS.items() if s.consent_column}


def address_columns() -> dict[str, str]:
    """Channel type → the customers mart's address column (types without one are left out)."""
    return {t: s.address_column for t, s in CHANNELS.items() if s.address_column}


def counted_channels() -> frozenset[str]:
    """Channel types that count toward the global contact cap."""
    return frozenset(t for t, s in CHANNELS.items() if s.counts_toward_caps)


def quiet_hours_channels() -> frozenset[str]:
    """Channel types deferred during the customer's local quiet hours."""
    return frozenset(t for t, s in CHANNELS.items() if s.quiet_hours)


def channel_resource_keys() -> tuple[str, ...]:
    """The Dagster resource keys of the channels delivered by a `DeliveryChannel` resource."""
    return tuple(s.resource_key for s in CHANNEL_SPECS if s.resource_key)
