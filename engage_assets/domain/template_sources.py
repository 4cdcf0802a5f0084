"""Where a channel's message comes from, and the check that it comes from somewhere, made when its program loads.

Each part a channel type renders (the registry's `parts`: `subject`, `txt`, `html`) comes from the first of:

1. the channel config's own text: `subject`, `message`, `title`, `body` (the registry's `texts` say which field fills
   which part: an e-mail's `subject` and `body`, an SMS's `message`, a push or in-app `title` and `body`);
2. a template file in the folder beside the program configs: `<configs>/templates/<programId>/<channel type>/
   <templateId>.<part>.j2` (`program_configs/templates/…` by default);
3. the packaged templates: `engage_assets/domain/message_templates/<programId>/<channel type>/<templateId>.<part>.j2`.

A channel's template id is its `templateId` (or, for a call, `scriptId`; for an in-app message, `messageType`), else
`<channelId>-default`.  The parts a message cannot go without (the text; an e-mail's subject) must come from one of
the three: a program whose enabled channel lacks one fails at load, naming the file, the channel's field and what
is missing, instead of every message failing at send time.

Template ids (and channel ids, which default ids are made of) are plain names — letters, digits, `-`, `_` and single
dots, no path separator, no `..` — checked at load, and checked again before any is joined into a path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engage_assets.domain.channels import CHANNELS, ChannelSpec

PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "message_templates"
TEMPLATES_FOLDER = "templates"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.))*")
MAX_NAME = 100


def check_plain_name(value: str, what: str = "template id") -> str:
    """`value` if it is a plain name (safe as one path component); ValueError saying why not."""
    if not isinstance(value, str) or len(value) > MAX_NAME or not _PLAIN_NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a plain name: letters, digits, '-', '_' and single dots, starting with a "
            f"letter or digit, at most {MAX_NAME} characters (no '/', '\\' or '..')"
        )
    return value


def is_plain_name(value: Any) -> bool:
    try:
        check_plain_name(value)
    except ValueError:
        return False
    return True


def channel_template_id(config: Any, channel_id: str) -> str:
    """The template id of a channel: `templateId`, `scriptId` or `messageType`, else `<channelId>-default`."""
    return config.templateId or config.scriptId or config.messageType or f"{channel_id}-default"


def template_roots(config_dir: Path | None) -> tuple[Path, ...]:
    """Where template files are looked for, first match wins: beside the configs, then the packaged ones."""
    return ((config_dir / TEMPLATES_FOLDER,) if config_dir is not None else ()) + (PACKAGED_TEMPLATES,)


def template_file(root: Path, program_id: str, channel_type: str, template_id: str, part: str) -> Path:
    """The file of one part under `root`; every component must be a plain name (ValueError otherwise)."""
    for what, name in (("program id", program_id), ("channel type", channel_type), ("template id", template_id)):
        check_plain_name(name, what)
    if part not in ("subject", "txt", "html"):
        raise ValueError(f"unknown template part {part!r}")
    return root / program_id / channel_type / f"{template_id}.{part}.j2"


def find_template(
    roots: Sequence[Path], program_id: str, channel_type: str, template_id: str, part: str
) -> Path | None:
    """The first existing file of the part among `roots`, or None."""
    for root in roots:
        path = template_file(root, program_id, channel_type, template_id, part)
        if path.is_file():
            return path
    return None


def required_parts(spec: ChannelSpec) -> tuple[str, ...]:
    """The parts a message of this type cannot be sent without."""
    return ("txt",) + (("subject",) if spec.requires_subject else ())


def _field_for(spec: ChannelSpec, part: str) -> str | None:
    return next((field for field, filled in spec.texts.items() if filled == part), None)


def missing_message_parts(program: Any, roots: Sequence[Path]) -> list[str]:
    """One line per enabled channel's part that neither the config's text nor a template file provides:
    `channels.<i>.config.<field>: …` (the field that could hold the text, else the one naming the template)."""
    problems = []
    for i, ch in enumerate(program.channels):
        if not ch.enabled:
            continue
        spec = CHANNELS[ch.type]
        template_id = channel_template_id(ch.config, ch.channelId)
        for part in required_parts(spec):
            field = _field_for(spec, part)
            if field is not None and getattr(ch.config, field, None):
                continue
            if find_template(roots, program.programId, ch.type, template_id, part) is not None:
                continue
            id_field = next((f for f in ("templateId", "scriptId", "messageType") if getattr(ch.config, f)), None)
            where = f"channels.{i}.config.{field or id_field or 'templateId'}"
            inline = f"no `{field}` in the config and " if field else ""
            problems.append(
                f"{where}: the {ch.type} channel {ch.channelId!r} has no message "
                f"{'subject' if part == 'subject' else 'text'}: {inline}no template file "
                f"{program.programId}/{ch.type}/{template_id}.{part}.j2 under {' or '.join(str(r) for r in roots)}"
            )
    return problems
