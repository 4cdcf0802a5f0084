"""JSON text as the event path reads it: `loads` (json.loads' values and errors, NaN and Infinity refused, at
orjson's speed) and the nesting checks (`nesting_bound`, a bound from the text; `nesting_depth`, the walk)."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

MAX_DEPTH = 64  # nesting of objects and arrays; a deeper payload is rejected before validation


def no_constants(name: str) -> Any:
    """`json.loads`' parse_constant: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


def nesting_bound(text: str | bytes) -> int:
    """How many objects and arrays the JSON text opens at most (brackets inside strings count too): a bound on its
    nesting depth at C speed, so `nesting_depth` walks only text that could be too deep."""
    if isinstance(text, str):
        return text.count("{") + text.count("[")
    return text.count(b"{") + text.count(b"[")


# orjson reads integers beyond 64 bits as floats, where `json` keeps them exact: text with a run of 19 digits (an
# integer that large, or just a long number or id) is left to `json`.
_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_B = re.compile(rb"\d{19}")


def loads(text: str | bytes) -> Any:
    """`json.loads(text, parse_constant=...)` refusing NaN and Infinity, at orjson's speed: orjson reads the common
    case; text it refuses (malformed, lone surrogates, non-UTF-8, too deep, out-of-range numbers) or might read
    differently (long digit runs) goes to `json.loads`, so the values and the errors are `json`'s."""
    long_digits = _LONG_DIGITS if isinstance(text, str) else _LONG_DIGITS_B
    if long_digits.search(text) is None:  # type: ignore[arg-type]
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text, parse_constant=no_constants)


def nesting_depth(value: Any) -> int:
    """Nesting depth of objects and arrays, without recursion (only containers are visited: a leaf costs a type
    check, not a stack entry; this runs on every event, three times on its way to a decision)."""
    if not isinstance(value, dict | list):
        return 0
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > MAX_DEPTH:
                return deepest
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return deepest
