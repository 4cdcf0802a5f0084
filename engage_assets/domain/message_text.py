"""A message's text as the spec writes it (`Hi {customerName}!`) and the fields an offer gives a message: shared by
the renderer (`domain.templates`) and the load-time check of messages (`domain.template_check`), which the config
loader runs; kept apart from the renderer so the config package can import it without an import cycle."""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\{(\w+)\}")
OFFER_FIELDS = ("duration", "includeUpgrade", "includePersonalCall", "impactLevel", "riskLevel", "discountPercent")


def yaml_message_to_jinja(message: str) -> str:
    """`Hi {customerName}!` → `{% raw %}Hi {% endraw %}{{ customerName }}{% raw %}!{% endraw %}`: literal text stays
    literal (even if it looks like Jinja), only `{word}` placeholders become variables."""
    out, pos = [], 0
    for m in PLACEHOLDER.finditer(message):
        if m.start() > pos:
            out.append(raw_text(message[pos : m.start()]))
        out.append("{{ " + m.group(1) + " }}")
        pos = m.end()
    if pos < len(message):
        out.append(raw_text(message[pos:]))
    return "".join(out)


def raw_text(text: str) -> str:
    """Literal text inside a Jinja template (`endraw` in it would close the raw block: split so it can't)."""
    return "{% raw %}" + text.replace("endraw", "end{% endraw %}{% raw %}raw") + "{% endraw %}"
