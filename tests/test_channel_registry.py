"""The channel registry drives consent, addresses, pressure, templates, planning and the delivery asset."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engage_assets.assets.delivery import DELIVERY_RESOURCE_KEYS, STORE_QUEUE_CHANNELS, delivery_channels
from engage_assets.domain.channels import CHANNEL_SPECS, CHANNELS, ChannelSpec, channel_resource_keys, channel_spec
from engage_assets.domain.conditions import consent_reason
from engage_assets.domain.config import CHANNEL_CONFIG_MODELS, Channel, ProgramConfig
from engage_assets.domain.contacts import CHANNEL_CONSENT, CONTACT_COLUMNS
from engage_assets.domain.pressure import ADDRESS_FIELD, OPT_IN_FIELD, PressurePolicy, PressureState, address_of
from engage_assets.domain.templates import config_texts
from engage_assets.settings import get_settings
from resources.by_env import local_resources

SPECS = pytest.mark.parametrize("spec", CHANNEL_SPECS, ids=[s.type for s in CHANNEL_SPECS])
NOW = int(datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp())


def _contact(**overrides):
    row = {
        "customer_id": "C1",
        "customer_name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+15550000001",
        "marketplace": "US",
        "time_zone": "UTC",
        "account_status": "active",
        "email_opt_in": True,
        "sms_opt_in": True,
        "push_opt_in": True,
        "phone_opt_in": True,
        "marketing_opt_out": False,
    }
    return row | overrides


def _touch(channel: str) -> dict:
    return {"customerId": "C1", "programId": "p", "subjectId": "S1", "channel": channel}


@SPECS
def test_consent_column_is_the_registrys(spec: ChannelSpec):
    assert CHANNEL_CONSENT.get(spec.type) == spec.consent_column == OPT_IN_FIELD.get(spec.type)
    if spec.consent_column is None:
        assert consent_reason(_touch(spec.type), _contact()) is None
        return
    assert spec.consent_column in CONTACT_COLUMNS
    assert consent_reason(_touch(spec.type), _contact()) is None
    assert consent_reason(_touch(spec.type), _contact(**{spec.consent_column: False})) == f"opted_out:{spec.type}"
    # Withdrawing another channel's consent does not touch this one.
    others = {s.consent_column: False for s in CHANNEL_SPECS if s.consent_column and s is not spec}
    assert consent_reason(_touch(spec.type), _contact(**others)) is None


@SPECS
def test_pressure_reads_the_registrys_address_consent_caps_and_quiet_hours(spec: ChannelSpec):
    policy = PressurePolicy(global_cap=1)
    assert ADDRESS_FIELD.get(spec.type) == spec.address_column
    assert (spec.type in policy.counted_channels) == spec.counts_toward_caps
    assert (spec.type in policy.quiet_channels) == spec.quiet_hours
    state = PressureState(policy, NOW)
    touch = _touch(spec.type)
    if spec.address_column is not None:
        assert spec.address_column in CONTACT_COLUMNS
        assert address_of(spec.type, _contact()) == _contact()[spec.address_column]
        bad = state.check(touch, _contact(**{spec.address_column: "not an address"}))
        assert (bad.action, bad.reason) == ("suppress", f"invalid_address:{spec.type}")
    else:
        assert address_of(spec.type, _contact()) is None
    if spec.consent_column is not None:
        opted_out = state.check(touch, _contact(**{spec.consent_column: False}))
        assert opted_out.reason == f"opted_out:{spec.type}"
    assert state.check(touch, _contact()).action == "allow"
    state.record(touch | {"subjectId": "S0"})
    capped = state.check(touch, _contact())
    assert (capped.reason == "global_cap") == spec.counts_toward_caps


@SPECS
def test_config_model_accepts_exactly_the_specs_fields(spec: ChannelSpec):
    model = CHANNEL_CONFIG_MODELS[spec.type]
    assert model.accepts == spec.config_fields
    assert "templateId" in spec.config_fields and spec.conditions <= spec.config_fields
    with pytest.raises(ValueError, match=f"{spec.type} channels take no field 'colour'"):
        model.model_validate({"colour": "red"})


@SPECS
def test_config_texts_fill_the_parts_the_spec_names(spec: ChannelSpec):
    texts = {field: f"{field} for {{customerName}}" for field in spec.texts}
    channel = Channel.model_validate({"channelId": "c", "type": spec.type, "priority": 1, "config": texts})
    program = ProgramConfig.model_construct(programId="p", channels=[channel])
    got = config_texts([program])
    assert got == {("p", "c", part): f"{field} for {{customerName}}" for field, part in spec.texts.items()}
    assert set(spec.texts.values()) <= set(spec.parts)


@SPECS
def test_every_channel_has_a_sender(spec: ChannelSpec):
    class Resources:
        pass

    resources = Resources()
    for key in channel_resource_keys():
        setattr(resources, key, f"sender:{key}")
    senders = delivery_channels(resources, engagement=object())  # type: ignore[arg-type]
    assert set(senders) == set(CHANNELS)
    if spec.resource_key is not None:
        assert senders[spec.type] == f"sender:{spec.resource_key}"
    else:
        assert isinstance(senders[spec.type], STORE_QUEUE_CHANNELS[spec.store_queue])  # type: ignore[index]


def test_resource_keys_are_the_ones_the_environments_provide():
    provided = set(local_resources(get_settings()))
    assert set(channel_resource_keys()) | DELIVERY_RESOURCE_KEYS <= provided
    assert set(channel_resource_keys()) == {"email_channel", "sms_channel", "push_channel"}


def test_unknown_channel_type_names_the_known_ones():
    with pytest.raises(KeyError, match="known: email, sms, push, phone, in-app"):
        channel_spec("fax")


def test_a_spec_needs_exactly_one_way_to_deliver():
    with pytest.raises(ValueError, match="exactly one of resource_key and store_queue"):
        ChannelSpec("x", None, None, False, False, ("txt",), {}, frozenset())
