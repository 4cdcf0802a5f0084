"""Data values out of operational text: what an alert may quote of an error message.

An error's first line says what went wrong ("Conversion Error: Could not convert string 'jane@x.com' to INT64",
"customer C00012345 has no contact row", "sms to +44 20 7946 0958 refused"), and often with the row's own values.
`redact_values` keeps the words and replaces what looks like a value: e-mail addresses, quoted literals, phone
numbers and other digit runs, identifiers with digits (customer and order ids, UUIDs, hashes), and the value of a
`name=value` pair.  It is a filter on shapes, not a proof: an unquoted plain word (a name in free text) passes, so
alerts also carry no row data by construction (the run-failure sensor reads run metadata only).
"""

from __future__ import annotations

import re

# Order matters: e-mails before quoted literals (an address in quotes is one value), values of `name=` before the
# general rules, phone numbers before the digit runs they contain.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`"), "<value>"),
    (re.compile(r"(?<==)\s*[^\s,;)\]}]+"), "<value>"),
    (re.compile(r"(?<![\w-])\+?\(?\d[\d ().-]{5,}\d"), "<number>"),
    (re.compile(r"\b(?=[\w-]*\d)[\w-]{6,}\b"), "<id>"),
    (re.compile(r"\d{3,}"), "<number>"),
)


def redact_values(text: str) -> str:
    """`text` with every value-shaped part replaced by a placeholder (see the module docstring)."""
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    return text
