"""`engage validate`'s check of a program's messages, beyond their presence (which loading checks): every part an
enabled channel renders — the config's own text or the template file it would use — compiles, and names only
variables a message is given (`domain.templates`: `TemplateRenderer.context`).  A typo (`{customerNmae}`) or an
unclosed `{% if %}` would otherwise fail each of those messages at send time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from engage_assets.domain.channels import CHANNELS
from engage_assets.domain.message_text import OFFER_FIELDS, yaml_message_to_jinja
from engage_assets.domain.template_sources import channel_template_id, find_template

# What `TemplateRenderer.context` may give a message (a field a touch lacks is left out and fails that one message).
TEMPLATE_VARIABLES = frozenset(
    {
        "segment",
        "offerType",
        "offer",
        "discountCode",
        "link",
        "cartLink",
        "marketplace",
        "currency",
        "customerName",
        "firstName",
        "refundType",
        "refundAmount",
        "creditAmount",
        *OFFER_FIELDS,
    }
)


def _sources(program: Any, roots: Sequence[Path]) -> list[tuple[str, str]]:
    """(where, Jinja source) of every part the program's enabled channels render."""
    out = []
    for i, ch in enumerate(program.channels):
        if not ch.enabled:
            continue
        spec = CHANNELS[ch.type]
        field_of = {part: field for field, part in spec.texts.items()}
        template_id = channel_template_id(ch.config, ch.channelId)
        for part in spec.parts:
            field = field_of.get(part)
            text = getattr(ch.config, field) if field else None
            if text:
                out.append((f"channels.{i}.config.{field}", yaml_message_to_jinja(text)))
                continue
            path = find_template(roots, program.programId, ch.type, template_id, part)
            if path is not None:
                out.append((f"channels.{i} ({ch.channelId}): {path}", path.read_text()))
    return out


def template_problems(program: Any, roots: Sequence[Path]) -> list[str]:
    """One line per message part that does not compile or names a variable no message has."""
    env = SandboxedEnvironment()
    problems = []
    for where, source in _sources(program, roots):
        try:
            names = meta.find_undeclared_variables(env.parse(source))
        except TemplateSyntaxError as e:
            problems.append(f"{where}: line {e.lineno}: {e.message}")
            continue
        unknown = sorted(names - TEMPLATE_VARIABLES)
        if unknown:
            problems.append(
                f"{where}: uses {', '.join(unknown)}, which no message is given; known: "
                f"{', '.join(sorted(TEMPLATE_VARIABLES))}"
            )
    return problems
