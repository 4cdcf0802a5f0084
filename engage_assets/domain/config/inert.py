"""Config values the platform cannot act on, refused when a program loads.

Every field of a program config either changes what the platform does or is refused: a value that asks for
behaviour the platform does not have is an error at load naming the field and the reason, never a setting silently
ignored.  The spec's own values, which describe what the platform does, load as they are:

- `refundStrategy` / `offerStrategy` `enabled: false`: a batch program's candidates are its offers; the segments
  always apply.  (To stop a program, set the program's own `enabled: false`.)
- `segmentedOffers: false`: offers are always chosen by segment, the only mode there is.
- an e-mail channel's `includeDiscount: false`: the message's text (the config's or the template's) decides what it
  shows; the flag cannot take the discount out of it.
- `personalization: low` or `medium`: messages are rendered with every field the text names; nothing reduces them.
"""

from __future__ import annotations

from engage_assets.domain.config.batch import ProgramConfig
from engage_assets.domain.config.reactive import ReactiveProgram

STRATEGY_OFF = (
    "cannot act: a batch program's candidates are its offers, so the segments always apply (to stop the program, "
    "set the program's `enabled: false`)"
)
UNSEGMENTED = "cannot act: offers are always chosen by segment (the only mode); remove the field or set it true"
NO_DISCOUNT = (
    "cannot act: the message's text (the config's `subject`/`body` or its template) decides what it shows; write "
    "it without the discount instead"
)
LESS_PERSONAL = (
    "cannot act: messages are rendered with every field their text names; write the text (or template) you want, "
    "and leave personalization out or at 'high'"
)


def refused_values(program: ProgramConfig | ReactiveProgram) -> list[str]:
    """`<field path>: <reason>` for each value in the program that the platform cannot act on."""
    problems = []
    if isinstance(program, ProgramConfig):
        for name in ("refundStrategy", "offerStrategy"):
            strategy = getattr(program, name)
            if strategy is None:
                continue
            if not strategy.enabled:
                problems.append(f"{name}.enabled: false {STRATEGY_OFF}")
            if not strategy.segmentedOffers:
                problems.append(f"{name}.segmentedOffers: false {UNSEGMENTED}")
    for i, ch in enumerate(program.channels):
        if ch.config.includeDiscount is False:
            problems.append(f"channels.{i}.config.includeDiscount: false {NO_DISCOUNT}")
        if ch.config.personalization in ("low", "medium"):
            problems.append(f"channels.{i}.config.personalization: {ch.config.personalization!r} {LESS_PERSONAL}")
    return problems
