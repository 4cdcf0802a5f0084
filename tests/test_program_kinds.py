"""Two kinds of program: batch (`dataConnectors`) and reactive (`eventSources`); the abandoned-cart spec's config
validates as written; channel configs accept exactly their type's fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engage_assets.domain.config import (
    Channel,
    ConfigError,
    ProgramConfig,
    ReactiveProgram,
    load_program,
    load_programs,
    validate_program,
)
from engage_assets.domain.filters import compile_chain
from engage_assets.settings import PROJECT_ROOT

CONFIGS = PROJECT_ROOT / "program_configs"
# The spec's "Program Configuration" block, copied verbatim from spec/ABANDONED-CART-RECOVERY.md.
CART = Path(__file__).resolve().parent / "fixtures" / "abandoned-cart-recovery.yaml"


def _cart() -> dict:
    return yaml.safe_load(CART.read_text())


def _write(tmp_path: Path, doc: dict, name: str = "program.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_cart_spec_block_validates_as_written():
    program = load_program(CART)
    assert isinstance(program, ReactiveProgram) and program.kind == "reactive"
    assert program.programId == "abandoned-cart-recovery" and program.group == "abandoned_cart_recovery"
    source = program.eventSources[0]
    assert source.type == "eventbridge" and source.config.eventBusName == "ecommerce-platform"
    assert source.config.eventPattern["detail"] == {"cartValue": [50, 999999]}
    assert program.scoringModels[0].trainingTable is None  # the spec names only the endpoint
    assert [f.rule for f in program.ordered_filters()] == [
        "trust",
        "cart-value",
        "eligibility",
        "frequency-cap",
        "inventory",
    ]
    email, sms, push = program.channels
    assert email.config.delayMinutes == 60 and email.config.includeDiscount is True
    assert sms.config.delayHours == 24 and sms.config.onlyIfNotConverted is True
    assert push.config.title == "Last Chance!" and push.config.delayHours == 72
    assert program.discountStrategy is not None and program.discountStrategy.maxDiscount == 20
    assert program.deduplication.keyFormat == "{customerId}:{cartId}:{programId}"
    assert program.candidateTTLDays == 7 and program.cron == "0 * * * *"
    assert program.partitionsStart.isoformat() == "2026-01-01"  # the default start of the hourly partitions


def test_the_cart_filters_compile_over_the_cart_columns():
    program = load_program(CART)
    available = {
        "account_status",
        "cart_value",
        "days_since_program_offer",
        "marketing_opt_out",
        "recovery_messages_7d",
        "all_items_in_stock",
    }
    by_id = {f.filter_id: f for f in compile_chain(program.ordered_filters(), available)}
    assert by_id["cart-value"].keep_sql == "cart_value >= 50.0"
    assert by_id["frequency-cap"].keep_sql == "coalesce(recovery_messages_7d, 0) < 2"
    assert by_id["inventory"].keep_sql == "coalesce(all_items_in_stock, false)"
    with pytest.raises(ValueError, match="cart_value"):
        compile_chain(program.ordered_filters(), available - {"cart_value"})


def test_shipped_configs_are_three_batch_programs_and_the_cart_program():
    programs = load_programs(CONFIGS)
    batch = [p for p in programs if isinstance(p, ProgramConfig)]
    assert len(batch) == 3 and all(p.kind == "batch" for p in batch)
    (cart,) = [p for p in programs if isinstance(p, ReactiveProgram)]
    assert cart.programId == "abandoned-cart-recovery" and cart.kind == "reactive"
    # The shipped config is the spec's block, plus the platform's partitionsStart and each model's retrainSchedule
    # (the spec's weekly retraining, as a cron).
    shipped = yaml.safe_load((CONFIGS / "abandoned_cart_recovery.yaml").read_text())
    assert [m.pop("retrainSchedule") for m in shipped["scoringModels"]] == ["0 3 * * 0"]
    assert {k: v for k, v in shipped.items() if k != "partitionsStart"} == _cart()


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: d.update(dataConnectors=[{"connectorId": "x"}]), "has both dataConnectors"),
        (lambda d: d.pop("eventSources"), "has neither dataConnectors"),
    ],
    ids=["both", "neither"],
)
def test_both_or_neither_sources_is_a_clear_error(tmp_path, mutate, reason):
    doc = _cart()
    mutate(doc)
    with pytest.raises(ConfigError) as exc:
        load_program(_write(tmp_path, doc))
    assert "  (root): " + reason in str(exc.value)


def test_the_union_discriminates_without_the_loader():
    assert isinstance(validate_program(_cart()), ReactiveProgram)
    batch = yaml.safe_load((CONFIGS / "churn_prevention.yaml").read_text())
    assert isinstance(validate_program(batch), ProgramConfig)
    with pytest.raises(ValueError, match="exactly one of dataConnectors"):
        validate_program({**batch, "eventSources": _cart()["eventSources"]})


def _set(path, value):
    def mutate(doc):
        node = doc
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (
            _set(["channels", 1, "config", "delayHourz"], 24),
            "channels.1.config.delayHourz",
            "did you mean 'delayHours'",
        ),
        (_set(["channels", 1, "config", "title"], "Hi"), "channels.1.config.title", "sms channels take no field"),
        (_set(["discountStrategy", "defaultDiscount"], 30), "discountStrategy", "exceeds maxDiscount"),
        (_set(["deduplication", "keyFormat"], "{customerId}:{basket}"), "deduplication.keyFormat", "['basket']"),
        (
            _set(["eventSources", 0, "config", "eventPattern", "source"], "ecommerce.cart"),
            "eventSources.0.config.eventPattern",
            "source: must be a list of values (write ['ecommerce.cart'])",
        ),
        (
            _set(["eventSources", 0, "config", "eventPattern", "detail"], {"cartValue": [{"range": [50, 100]}]}),
            "eventSources.0.config.eventPattern",
            "content filter",
        ),
        (_set(["eventSources", 0, "config", "eventBusName"], None), "eventSources.0", "eventBusName"),
        (_set(["eventSources", 0, "type"], "kafka"), "eventSources.0.type", "'eventbridge'"),
        (_set(["filterChain", 1, "parameters", "minCartValue"], -1), "filterChain.1", "minCartValue"),
        (_set(["filterChain", 4, "parameters", "requireInStock"], "maybe"), "filterChain.4", "requireInStock"),
        (_set(["channels", 0, "type"], "fax"), "channels.0.type", "'in-app'"),
    ],
)
def test_bad_reactive_config_names_field_and_reason(tmp_path, mutate, field, reason):
    doc = _cart()
    mutate(doc)
    with pytest.raises(ConfigError) as exc:
        load_program(_write(tmp_path, doc))
    msg = str(exc.value)
    assert f"  {field}" in msg and reason in msg, msg
    assert "reactive." not in msg  # the union's tag is not part of the field path


def test_content_filters_and_or_patterns_are_accepted():
    doc = _cart()
    doc["eventSources"][0]["config"]["eventPattern"] = {
        "source": [{"prefix": "ecommerce."}],
        "detail": {
            "cartValue": [{"numeric": [">=", 50]}],
            "$or": [{"currency": ["USD"]}, {"marketplace": [{"anything-but": ["JP"]}]}],
            "coupon": [{"exists": False}],
        },
    }
    program = validate_program(doc)
    assert isinstance(program, ReactiveProgram)


def test_a_typo_in_a_batch_programs_channel_is_rejected(tmp_path):
    doc = yaml.safe_load((CONFIGS / "win_back.yaml").read_text())
    doc["channels"][2]["config"]["delayDayz"] = 3  # the win-back SMS
    with pytest.raises(ConfigError) as exc:
        load_program(_write(tmp_path, doc))
    assert "  channels.2.config.delayDayz: sms channels take no field 'delayDayz' (did you mean 'delayDays'?)" in str(
        exc.value
    )


@pytest.mark.parametrize(
    "channel_type, field, value",
    [("in-app", "sendTime", "10:00"), ("phone", "message", "Hi"), ("email", "displayDuration", 3)],
)
def test_a_field_of_another_channel_type_is_rejected(channel_type, field, value):
    with pytest.raises(ValueError, match=f"{channel_type} channels take no field '{field}'"):
        Channel.model_validate({"channelId": "c", "type": channel_type, "priority": 1, "config": {field: value}})


def test_each_type_gets_its_own_config_model_and_schema():
    ch = Channel.model_validate({"channelId": "p", "type": "phone", "priority": 1, "config": {"scriptId": "s"}})
    assert type(ch.config).__name__ == "PhoneChannelConfig" and ch.config.sendTime is None
    schema = type(ch.config).model_json_schema()
    assert "scriptId" in schema["properties"] and "sendTime" not in schema["properties"]
    assert schema["additionalProperties"] is False
    bare = Channel.model_validate({"channelId": "i", "type": "in-app", "priority": 2})
    assert type(bare.config).__name__ == "InAppChannelConfig"


def test_a_folder_of_both_kinds_loads_both(tmp_path):
    (tmp_path / "cart.yaml").write_text(CART.read_text())
    (tmp_path / "churn.yaml").write_text((CONFIGS / "churn_prevention.yaml").read_text())
    programs = load_programs(tmp_path)
    assert {p.kind for p in programs} == {"batch", "reactive"}
