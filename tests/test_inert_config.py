"""Every config field acts or is refused (#12, item 3): a value the platform cannot act on fails at load, naming the
file, the field and why, instead of being silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engage_assets.domain.config import ConfigError, load_program, load_programs
from engage_assets.settings import PROJECT_ROOT

CONFIGS = PROJECT_ROOT / "program_configs"


def _write(tmp_path: Path, name: str, change) -> Path:
    raw = yaml.safe_load((CONFIGS / name).read_text())
    change(raw)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_shipped_configs_load():
    assert {p.programId for p in load_programs(CONFIGS)} >= {"proactive-refunds", "win-back-campaigns"}


@pytest.mark.parametrize(
    ("name", "change", "field", "why"),
    [
        (
            "win_back.yaml",
            lambda r: r["offerStrategy"].update(segmentedOffers=False),
            "offerStrategy.segmentedOffers",
            "always chosen by segment",
        ),
        (
            "win_back.yaml",
            lambda r: r["offerStrategy"].update(enabled=False),
            "offerStrategy.enabled",
            "set the program's `enabled: false`",
        ),
        (
            "proactive_refunds.yaml",
            lambda r: r["refundStrategy"].update(enabled=False),
            "refundStrategy.enabled",
            "segments always apply",
        ),
        (
            "win_back.yaml",
            lambda r: r["channels"][0]["config"].update(personalization="low"),
            "channels.0.config.personalization",
            "'low' cannot act",
        ),
        (
            "abandoned_cart_recovery.yaml",
            lambda r: r["channels"][0]["config"].update(includeDiscount=False),
            "channels.0.config.includeDiscount",
            "write it without the discount",
        ),
    ],
)
def test_a_value_that_cannot_act_is_refused_at_load(tmp_path, name, change, field, why):
    path = _write(tmp_path, name, change)
    with pytest.raises(ConfigError) as error:
        load_program(path)
    text = str(error.value)
    assert str(path) in text and f"  {field}: " in text and why in text and "cannot act" in text


def test_the_values_that_describe_what_the_platform_does_load(tmp_path):
    def spec_values(raw):
        raw["offerStrategy"].update(segmentedOffers=True, enabled=True)
        raw["channels"][0]["config"]["personalization"] = "high"

    assert load_program(_write(tmp_path, "win_back.yaml", spec_values)).programId == "win-back-campaigns"
