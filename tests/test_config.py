"""Program configs: the three spec configs load; bad configs fail with file, field path and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engage_assets.domain.config import ConfigError, eventbridge_to_cron, load_program, load_programs
from engage_assets.settings import PROJECT_ROOT

CONFIGS = PROJECT_ROOT / "program_configs"


def test_spec_programs_load_with_their_cadence():
    programs = {p.programId: p for p in load_programs(CONFIGS)}
    assert set(programs) == {"proactive-refunds", "win-back-campaigns", "churn-prevention", "abandoned-cart-recovery"}
    assert programs["proactive-refunds"].cron == "0 2 * * *"
    assert programs["churn-prevention"].cron == "0 2 * * 1"
    assert programs["win-back-campaigns"].cron == "0 2 * * 1#1"
    assert [f.filterId for f in programs["churn-prevention"].ordered_filters()] == [
        "trust",
        "churn-signal",
        "customer-value",
        "eligibility",
        "frequency-cap",
    ]
    assert {p.group for p in programs.values()} == {
        "proactive_refunds",
        "win_back",
        "churn_prevention",
        "abandoned_cart_recovery",
    }
    refunds = programs["proactive-refunds"]
    assert [s.refundType for s in refunds.strategy.segments] == ["full", "partial", "credit"]
    assert refunds.candidateTTLDays == 30 and programs["win-back-campaigns"].candidateTTLDays == 90


@pytest.mark.parametrize(
    "expr, cron",
    [
        ("cron(0 2 * * ? *)", "0 2 * * *"),
        ("cron(0 2 ? * MON *)", "0 2 * * 1"),
        ("cron(0 2 ? * MON#1 *)", "0 2 * * 1#1"),
        ("cron(0 2 ? * 1#1 *)", "0 2 * * 0#1"),  # EventBridge 1 = Sunday
        ("cron(30 9 ? * 2-6 *)", "30 9 * * 1-5"),
    ],
)
def test_eventbridge_cron_translation(expr, cron):
    assert eventbridge_to_cron(expr) == cron


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((CONFIGS / "churn_prevention.yaml").read_text())
    mutate(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _set(path_parts, value):
    def mutate(raw):
        node = raw
        for p in path_parts[:-1]:
            node = node[p]
        node[path_parts[-1]] = value

    return mutate


@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (
            _set(["filterChain", 1, "filterId"], "churn-signals"),
            "filterChain.1",
            "unknown business-rule filter 'churn-signals'",
        ),
        (
            _set(["filterChain", 0, "type"], "magic"),
            "filterChain.0.type",
            "Input should be 'trust', 'business-rule' or 'eligibility'",
        ),
        (_set(["candidateTTLDays"], "thirty"), "candidateTTLDays", "valid integer"),
        (_set(["batchSchedule"], "cron(0 2 * *)"), "batchSchedule", "6 fields"),
        (_set(["batchSchedule"], "every monday"), "batchSchedule", "must look like cron("),
        (_set(["offerStrategy", "segments", 1, "scoreRange"], [0.5, 0.8]), "offerStrategy", "overlap"),
        (_set(["offerStrategy", "segments", 1, "scoreRange"], [0.6, 0.75]), "offerStrategy", "gap between segments"),
        (
            _set(["offerStrategy", "segments", 0, "scoreRange"], [0.9, 0.8]),
            "offerStrategy.segments.0.scoreRange",
            "low < high",
        ),
        (
            _set(
                ["filterChain", 1, "parameters"],
                {
                    "minSignalsRequired": "two",
                    "minEngagementDecline": 0.3,
                    "maxLoginFrequencyRatio": 0.5,
                    "minDaysSinceLastPurchase": 60,
                },
            ),
            "filterChain.1",
            "parameters.minSignalsRequired",
        ),
        (
            _set(["filterChain", 2, "parameters", "minSubscriptionTier"], "platinum"),
            "filterChain.2",
            "minSubscriptionTier",
        ),
        (_set(["channels", 0, "config", "sendTime"], "25:00"), "channels.0.config.sendTime", "HH:MM"),
        (_set(["scoringModels", 0, "endpoint"], "http://x"), "scoringModels.0.endpoint", "sagemaker://"),
        (
            _set(["dataConnectors", 0, "config", "query"], "SELECT * FROM t WHERE d = CURRENT_DATE"),
            "dataConnectors.0.config.query",
            "bind parameters",
        ),
        (_set(["offerStrategy", "segmentScore"], "nope"), "(root)", "segmentScore 'nope'"),
        (_set(["unexpectedField"], 1), "unexpectedField", "Extra inputs are not permitted"),
        (_set(["channels", 0, "config", "timezone"], "Mars/Olympus"), "channels.0.config.timezone", "IANA zone"),
        (
            _set(["channels", 0, "config", "delayMinutes"], -5),
            "channels.0.config.delayMinutes",
            "greater than or equal",
        ),
        (_set(["channels", 0, "config", "delayMinutes"], 60), "channels.0.config", "ambiguous"),
        (
            _set(["channels", 0, "config", "subject"], "Hi {{ customerName }}"),
            "channels.0.config.subject",
            "only {fieldName} placeholders",
        ),
        (
            _set(["channels", 1, "config", "criticalRiskOnly"], "sometimes"),
            "channels.1.config.criticalRiskOnly",
            "valid boolean",
        ),
    ],
)
def test_bad_config_names_file_field_and_reason(tmp_path, mutate, field, reason):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as exc:
        load_program(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert f"  {field}" in msg, msg
    assert reason in msg, msg


def test_invalid_yaml_and_duplicate_program_ids(tmp_path):
    (tmp_path / "a.yaml").write_text("programId: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_programs(tmp_path)
    (tmp_path / "a.yaml").write_text((CONFIGS / "win_back.yaml").read_text())
    (tmp_path / "b.yaml").write_text((CONFIGS / "win_back.yaml").read_text())
    with pytest.raises(ConfigError, match="defined twice"):
        load_programs(tmp_path)


def test_cart_channel_fragment_from_the_spec_validates():
    from engage_assets.domain.config import Channel

    sms = Channel.model_validate(
        {
            "channelId": "sms",
            "type": "sms",
            "priority": 2,
            "config": {
                "delayHours": 24,
                "onlyIfNotConverted": True,
                "message": "Hi {customerName}! Your cart is waiting. Use code {discountCode} for {discountPercent}% off. "
                "Shop now: {cartLink}",
            },
        }
    )
    assert sms.config.delayHours == 24 and sms.config.onlyIfNotConverted is True
    push = Channel.model_validate(
        {
            "channelId": "push",
            "type": "push",
            "priority": 3,
            "config": {
                "delayHours": 72,
                "title": "Last Chance!",
                "body": "Your cart expires soon. {discountPercent}% off ends today!",
            },
        }
    )
    assert push.config.title == "Last Chance!"
