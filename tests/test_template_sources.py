"""Message content from configuration (#12, item 1): the config's own texts, template files beside the configs, or
the packaged templates; a message with no text (or an e-mail with no subject) is a config error at load, naming the
file, the field and what is missing, never `no_template` at send time; template ids are plain names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from engage_assets.domain.config import ConfigError, load_program, load_programs
from engage_assets.domain.config.channels import Channel
from engage_assets.domain.template_sources import PACKAGED_TEMPLATES, check_plain_name, template_roots
from engage_assets.domain.templates import TemplateError, TemplateRenderer, config_texts
from engage_assets.settings import PROJECT_ROOT

BASE = yaml.safe_load((PROJECT_ROOT / "program_configs" / "proactive_refunds.yaml").read_text())


def write_program(folder: Path, channels: list[dict], program_id: str = "my-refunds") -> Path:
    """The shipped refunds program as a new program `program_id` with `channels`, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{program_id.replace('-', '_')}.yaml"
    path.write_text(yaml.safe_dump({**BASE, "programId": program_id, "channels": channels}))
    return path


def email(**config) -> dict:
    return {"channelId": "email", "type": "email", "priority": 1, "config": config}


def sms(**config) -> dict:
    return {"channelId": "sms", "type": "sms", "priority": 2, "config": config}


def write_template(folder: Path, relative: str, text: str) -> None:
    path = folder / "templates" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def touch(program_id: str, channel: str, template_id: str, **extra) -> dict:
    return {
        "programId": program_id,
        "customerId": "C1",
        "subjectId": "O1",
        "channel": channel,
        "channelId": channel,
        "templateId": template_id,
        "offer": json.dumps({"refundType": "full", "refundAmount": 85.0, "creditAmount": 20.0}),
        "marketplace": "US",
        "currency": "USD",
        "discountCode": "CODE1",
        **extra,
    }


def renderer_for(folder: Path, program) -> TemplateRenderer:
    return TemplateRenderer(messages=config_texts([program]), roots=template_roots(folder))


def test_a_new_programs_missing_templates_fail_at_load_naming_file_field_and_what(tmp_path):
    path = write_program(tmp_path, [email(templateId="my-email"), sms()])
    with pytest.raises(ConfigError) as err:
        load_program(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: invalid program config")
    # The e-mail has no text and no subject; the SMS no message.
    assert "channels.0.config.body: the email channel 'email' has no message text" in msg
    assert "my-refunds/email/my-email.txt.j2" in msg
    assert "channels.0.config.subject: the email channel 'email' has no message subject" in msg
    assert "channels.1.config.message: the sms channel 'sms' has no message text" in msg
    assert str(tmp_path / "templates") in msg and str(PACKAGED_TEMPLATES) in msg
    # The whole folder refuses to load too (what definitions and `engage run` do).
    with pytest.raises(ConfigError, match="has no message text"):
        load_programs(tmp_path)


def test_template_files_beside_the_configs_are_found_and_rendered(tmp_path):
    path = write_program(tmp_path, [email(templateId="my-email"), sms()])
    write_template(tmp_path, "my-refunds/email/my-email.subject.j2", "Sorry, {{ customerName }}")
    write_template(
        tmp_path, "my-refunds/email/my-email.txt.j2", "We issued a {{ refundType }}. Code {{ discountCode }}"
    )
    write_template(tmp_path, "my-refunds/sms/sms-default.txt.j2", "Hi {{ firstName }}: {{ refundType }}")
    program = load_program(path)
    r = renderer_for(tmp_path, program)
    mail = r.render(touch("my-refunds", "email", "my-email"), {"customer_name": "Ada Lovelace"})
    assert (mail.subject, mail.text, mail.html) == ("Sorry, Ada Lovelace", "We issued a full refund. Code CODE1", None)
    assert r.render(touch("my-refunds", "sms", "sms-default"), {"customer_name": "Ada Lovelace"}).text == (
        "Hi Ada: full refund"
    )


def test_the_spec_fields_inline_need_no_template_file(tmp_path):
    path = write_program(
        tmp_path,
        [
            email(subject="Sorry, {customerName}", body="We issued a {refundType}."),
            sms(message="Hi {customerName}, check your email."),
        ],
    )
    program = load_program(path)
    r = renderer_for(tmp_path, program)
    mail = r.render(touch("my-refunds", "email", "email-default"), {"customer_name": "Ada"})
    assert (mail.subject, mail.text) == ("Sorry, Ada", "We issued a full refund.")
    assert r.render(touch("my-refunds", "sms", "sms-default"), {"customer_name": "Ada"}).text == (
        "Hi Ada, check your email."
    )


def test_a_subject_alone_still_needs_the_text(tmp_path):
    path = write_program(tmp_path, [email(subject="Sorry", templateId="nowhere")])
    with pytest.raises(ConfigError) as err:
        load_program(path)
    problems = str(err.value).splitlines()[1:]
    assert len(problems) == 1 and problems[0].startswith("  channels.0.config.body: the email channel")


def test_a_disabled_channel_needs_no_message(tmp_path):
    path = write_program(tmp_path, [email(subject="S", body="B"), {**sms(), "enabled": False}])
    assert [c.channelId for c in load_program(path).channels] == ["email", "sms"]


def test_the_packaged_templates_serve_a_shipped_program_and_a_file_beside_the_configs_overrides_them(tmp_path):
    path = write_program(tmp_path, [email(templateId="proactive-refund-v2")], program_id="proactive-refunds")
    program = load_program(path)  # found among the packaged templates
    assert (
        renderer_for(tmp_path, program)
        .render(touch("proactive-refunds", "email", "proactive-refund-v2"), {"customer_name": "Ada"})
        .subject
    )
    write_template(tmp_path, "proactive-refunds/email/proactive-refund-v2.subject.j2", "Our own subject")
    msg = renderer_for(tmp_path, program).render(
        touch("proactive-refunds", "email", "proactive-refund-v2"), {"customer_name": "Ada"}
    )
    assert msg.subject == "Our own subject" and msg.html  # the other parts still come from the packaged files


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "..", "a/b", "a\\b", "/abs", "x/../y", "a..b", ".hidden", "", "a b", "é"]
)
def test_a_template_id_that_is_not_a_plain_name_is_a_config_error(tmp_path, bad):
    path = write_program(tmp_path, [email(templateId=bad, subject="S", body="B")])
    with pytest.raises(ConfigError) as err:
        load_program(path)
    assert "channels.0.config.templateId" in str(err.value) and "plain name" in str(err.value)
    with pytest.raises(ValueError, match="plain name"):
        check_plain_name(bad)


@pytest.mark.parametrize("field", ["scriptId", "messageType"])
def test_script_and_message_type_ids_are_plain_names_too(field):
    channel_type = "phone" if field == "scriptId" else "in-app"
    with pytest.raises(ValueError, match="plain name"):
        Channel.model_validate(
            {"channelId": "c", "type": channel_type, "priority": 1, "config": {field: "../../secrets"}}
        )


def test_a_channel_id_is_a_plain_name():
    with pytest.raises(ValueError, match="channelId '../x' is not a plain name"):
        Channel.model_validate({"channelId": "../x", "type": "sms", "priority": 1})


def test_good_names_pass():
    for name in ("proactive-refund-v2", "sms-default", "retention.offer_v4", "A1"):
        assert check_plain_name(name) == name


def test_the_renderer_never_joins_a_bad_id_into_a_path(tmp_path):
    """A ledger row written before the check (or by hand) with a traversal id fails that message, reading nothing."""
    secret = tmp_path / "secret.txt.j2"
    secret.write_text("TOP SECRET")
    (tmp_path / "root" / "p" / "sms").mkdir(parents=True)
    r = TemplateRenderer(root=tmp_path / "root", messages={})
    for bad in ("../../../secret", "../../secret", "/etc/passwd"):
        with pytest.raises(TemplateError) as err:
            r.render(touch("p", "sms", bad), {"customer_name": "A"})
        assert err.value.reason == "bad_template_id"


def test_the_shipped_configs_load_with_their_messages():
    programs = load_programs(PROJECT_ROOT / "program_configs")
    assert {p.programId for p in programs} >= {"proactive-refunds", "win-back-campaigns", "churn-prevention"}
