"""JSON text as the event path reads it: `loads` (json.loads' values and errors, NaN and Infinity refused, at
pydantic-core's speed) and the nesting checks (`nesting_bound`, a bound from the text; `nesting_depth`, the walk)."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json

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


def loads(text: str | bytes) -> Any:
    """`json.loads(text, parse_constant=no_constants)` (NaN and Infinity refused), at the speed of pydantic-core's
    JSON reader (jiter: integers of any size exact, `1e400` infinite, as `json` reads them): text it refuses
    (malformed, lone surrogates, non-UTF-8, NaN, too deep) goes to `json.loads`, so the errors are `json`'s."""
    try:
        return from_json(text, allow_inf_nan=False, cache_strings=False)
    except ValueError:
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
