"""A config reference and tooling (#12, item 4): docs/config-reference.md and program_configs/schema.json generated
from the models and kept current; `engage validate` checks configs, messages and expressions without running
anything; `engage new-program` writes a starting config that passes it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from engage_assets.cli import main
from engage_assets.cli.config_tools import SCHEMA_COMMENT, generated_files
from engage_assets.domain.config import ConfigError, load_program
from engage_assets.domain.config.schema import program_json_schema
from engage_assets.domain.template_check import TEMPLATE_VARIABLES
from engage_assets.domain.templates import OFFER_FIELDS, TemplateRenderer
from engage_assets.settings import PROJECT_ROOT

CONFIGS = PROJECT_ROOT / "program_configs"


def engage(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    return int(exit_.value.code or 0)


def test_the_reference_and_the_schema_are_current():
    for path, text in generated_files().items():
        assert path.exists() and path.read_text() == text, f"{path} is stale: run `engage config-docs`"
    assert engage("config-docs", "--check") == 0


def test_every_config_field_and_filter_parameter_has_a_meaning():
    undescribed = [
        f"{model}.{name}"
        for model, schema in program_json_schema()["$defs"].items()
        for name, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert not undescribed, f"add Field(description=...) to: {undescribed}"


def test_the_reference_says_the_comparison_each_threshold_uses():
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in (PROJECT_ROOT / "docs" / "config-reference.md").read_text().splitlines()
        if line.startswith("| `")
    }
    assert "Inclusive" in rows["minLifetimeValue"] and "keeps exactly $200" in rows["minLifetimeValue"]
    assert "Strict" in rows["minDelayDays"] and "delay_days > minDelayDays" in rows["minDelayDays"]
    assert "program_offers_365d < maxRefundsPerYear" in rows["maxRefundsPerYear"]
    assert "days_since_program_offer > lookbackDays" in rows["lookbackDays"]
    assert "required" in rows["expression"] and "regexp_matches" in rows["expression"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_each_program_yaml_names_the_schema_and_the_schema_accepts_it(path: Path):
    assert path.read_text().splitlines()[0] == SCHEMA_COMMENT
    raw = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))  # dates as the editor sees them
    jsonschema.Draft202012Validator(program_json_schema()).validate(raw)


def test_the_schema_shows_an_editor_a_field_the_channel_type_or_the_rule_does_not_take():
    raw = json.loads(json.dumps(yaml.safe_load((CONFIGS / "churn_prevention.yaml").read_text()), default=str))
    raw["channels"][0]["config"]["delayHourz"] = 3
    raw["channels"][2]["config"]["sendTime"] = "10:00"  # an in-app message has no send time
    raw["filterChain"][1]["parameters"]["minSignals"] = 2
    errors = next(jsonschema.Draft202012Validator(program_json_schema()).iter_errors(raw)).context
    # (the root: the reactive kind, which this batch program is not, has no dataConnectors)
    where = {tuple(e.absolute_path) for e in errors if "Additional properties" in e.message and e.absolute_path}
    assert where == {("channels", 0, "config"), ("channels", 2, "config"), ("filterChain", 1, "parameters")}


def test_validate_passes_the_shipped_configs(capsys):
    assert engage("validate") == 0
    out = capsys.readouterr().out
    assert "4 program config(s) valid" in out and "ok  " in out


def _bad_configs(folder: Path) -> None:
    templates = folder / "templates" / "churn-prevention" / "email"
    templates.mkdir(parents=True)
    (templates / "retention-offer-v4.subject.j2").write_text("{% if customerName %}Hi{% endif")
    (templates / "retention-offer-v4.txt.j2").write_text("Hi {{ customerName }}")
    (folder / "churn_prevention.yaml").write_text((CONFIGS / "churn_prevention.yaml").read_text())
    raw = yaml.safe_load((CONFIGS / "proactive_refunds.yaml").read_text())
    raw["channels"][1]["config"]["message"] = "Hi {customerNmae}, check your email"
    (folder / "refunds.yaml").write_text(yaml.safe_dump(raw))
    raw = yaml.safe_load((CONFIGS / "win_back.yaml").read_text())
    raw["filterChain"].append(
        {
            "filterId": "expression",
            "type": "business-rule",
            "order": 9,
            "parameters": {"expression": "churn_reasn = 'price'", "reason": "r"},
        }
    )
    (folder / "win_back.yaml").write_text(yaml.safe_dump(raw))
    raw["filterChain"].pop()
    (folder / "win_back_copy.yaml").write_text(yaml.safe_dump(raw))
    (folder / "win_back_again.yaml").write_text(yaml.safe_dump(raw))


def test_validate_lists_every_error_and_exits_1(tmp_path, capsys):
    _bad_configs(tmp_path)
    assert engage("validate", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'churn_prevention.yaml'}: invalid program config" in err  # found by loading itself
    assert "retention-offer-v4.subject.j2: line 1: " in err  # the unclosed {% if %}
    assert "channels.1.config.message: uses customerNmae, which no message is given" in err
    assert "filterChain.5.parameters.expression: unknown column 'churn_reasn' (did you mean 'churn_reason'?)" in err
    assert "programId 'win-back-campaigns' is also defined in" in err
    assert "4 of 5 program config(s) invalid" in err
    assert engage("validate", str(tmp_path / "win_back_copy.yaml")) == 0
    assert engage("validate", str(tmp_path / "missing.yaml")) == 1


def test_a_message_that_would_fail_at_send_time_fails_at_load(tmp_path):
    """Not only `engage validate`: loading (Dagster's definitions, `engage run`) refuses a misspelled placeholder and
    a template that does not compile, so nothing fails at 2 AM that `engage validate` could have caught."""
    _bad_configs(tmp_path)
    with pytest.raises(ConfigError, match="uses customerNmae, which no message is given"):
        load_program(tmp_path / "refunds.yaml")
    with pytest.raises(ConfigError, match=r"retention-offer-v4.subject.j2: line 1: "):
        load_program(tmp_path / "churn_prevention.yaml")


@pytest.mark.parametrize("reactive", [False, True], ids=["batch", "reactive"])
def test_new_program_writes_a_commented_config_that_validates_as_written(tmp_path, capsys, reactive):
    argv = ["new-program", "Loyalty Boost", "--dir", str(tmp_path)] + (["--reactive"] if reactive else [])
    assert engage(*argv) == 0
    path = tmp_path / "loyalty_boost.yaml"
    text = path.read_text()
    assert text.splitlines()[0] == SCHEMA_COMMENT and text.count("\n#") + text.count("  # ") > 10
    raw = yaml.safe_load(text)
    assert raw["programId"] == "loyalty-boost" and raw["enabled"] is False
    assert ("eventSources" in raw) is reactive and any(f.get("rule") == "expression" for f in raw["filterChain"])
    capsys.readouterr()
    assert engage("validate", str(path)) == 0
    assert f"loyalty-boost ({'reactive' if reactive else 'batch'}, disabled" in capsys.readouterr().out
    assert engage(*argv) == 1  # never over an existing file
    assert engage("new-program", "42", "--dir", str(tmp_path)) == 2


def test_the_known_template_variables_are_what_a_message_is_given():
    offer = {f: 1 for f in OFFER_FIELDS} | {"refundType": "full", "refundAmount": 5.0, "creditAmount": 2.0}
    touch = {"programId": "p", "customerId": "c", "subjectId": "s", "discountCode": "X", "offer": offer}
    context = TemplateRenderer(roots=[]).context(touch, {"customer_name": "Ada Lovelace", "marketplace": "US"})
    assert set(context) <= TEMPLATE_VARIABLES
