"""EventBridge content filters: one entry of a pattern's value list, compiled to a test on one event value.

A pattern leaf is a list; each entry is a literal (string, number, boolean, null) or a one-key mapping naming a
filter.  This module turns one entry into a `ValueTest` (a predicate on one leaf value of the event) or an `Exists`
marker (a test on whether the field has any leaf value at all).  The semantics follow EventBridge's documentation
and its matching engine (aws/event-ruler):

- literals match by JSON type: the string "5" never matches the number 5, `true` never matches 1, `null` matches
  only null; numbers compare by value (300 matches 3.0e2).
- prefix, suffix, equals-ignore-case and wildcard apply to strings only; numeric applies to JSON numbers only, within
  ±5.0e9 (the engine's comparable range); cidr applies to strings holding an IP address.
- anything-but matches a value that is not excluded, whatever its type: `{"anything-but": "x"}` matches 5 and null;
  `{"anything-but": [100]}` matches the string "100".  It needs a value: an absent field never matches it.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

# A test on one leaf value of the event (a string, number, boolean or null).
ValueTest = Callable[[Any], bool]

OPERATORS = frozenset(
    {"prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists", "cidr", "wildcard"}
)
ANYTHING_BUT_FORMS = frozenset({"prefix", "suffix", "equals-ignore-case", "wildcard"})
LOWER_BOUNDS = frozenset({">", ">="})
UPPER_BOUNDS = frozenset({"<", "<="})
NUMERIC_OPERATORS = LOWER_BOUNDS | UPPER_BOUNDS | {"="}
# EventBridge compares numbers in this range (aws/event-ruler's ComparableNumber); outside it, numeric never matches.
NUMERIC_LIMIT = 5.0e9


class PatternError(ValueError):
    """An event pattern is not one EventBridge accepts; `path` is the dotted path of the bad part."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path or 'the pattern'}: {reason}")


@dataclass(frozen=True)
class Exists:
    """An `{"exists": ...}` entry: the field has (`present=True`) or lacks (`False`) a leaf value."""

    present: bool


def is_number(value: Any) -> bool:
    """A JSON number: an int or a finite float, never a boolean."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def same_value(literal: Any, value: Any) -> bool:
    """EventBridge's exact match: same JSON type and equal (numbers by value, so 300 == 3.0e2)."""
    if literal is None or isinstance(literal, bool):
        return value is literal
    if isinstance(literal, str):
        return isinstance(value, str) and value == literal
    return is_number(value) and bool(value == literal)


def check_literal(item: Any, path: str) -> None:
    """A literal a value list may hold: a string, a finite number, a boolean or null."""
    if item is None or isinstance(item, str | bool) or is_number(item):
        return
    if isinstance(item, float):
        raise PatternError(path, "numbers must be finite")
    raise PatternError(path, f"list items are values or content filters, got {type(item).__name__}")


def _string_test(check: Callable[[str], bool], value: Any) -> bool:
    return isinstance(value, str) and check(value)


def _excluded(excluded: tuple[Any, ...], value: Any) -> bool:
    return any(same_value(x, value) for x in excluded)


def _not(test: ValueTest, value: Any) -> bool:
    return not test(value)


def _require_str(arg: Any, path: str, name: str, *, non_empty: bool = False) -> str:
    if not isinstance(arg, str):
        raise PatternError(path, f"{name} takes a string")
    if non_empty and not arg:
        raise PatternError(path, f"{name} takes a non-empty string")
    return arg


def _starts(prefix: str, fold: bool, value: str) -> bool:
    return (value.lower() if fold else value).startswith(prefix)


def _ends(suffix: str, fold: bool, value: str) -> bool:
    return (value.lower() if fold else value).endswith(suffix)


def _folded_in(folded: frozenset[str], value: str) -> bool:
    return value.lower() in folded


def _full_match(regex: re.Pattern[str], value: str) -> bool:
    return regex.fullmatch(value) is not None


def _in_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network, value: str) -> bool:
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False


def _affix(name: str, arg: Any, path: str, *, non_empty: bool = False) -> ValueTest:
    """prefix / suffix, either on a string or `{"equals-ignore-case": string}`."""
    fold = isinstance(arg, dict) and list(arg) == ["equals-ignore-case"]
    text = _require_str(arg["equals-ignore-case"] if fold else arg, path, name, non_empty=non_empty)
    check = _starts if name == "prefix" else _ends
    return partial(_string_test, partial(check, text.lower() if fold else text, fold))


def _ignore_case(arg: Any, path: str) -> ValueTest:
    folded = _require_str(arg, path, "equals-ignore-case").lower()
    return partial(_string_test, partial(_folded_in, frozenset({folded})))


def wildcard_regex(arg: Any, path: str) -> re.Pattern[str]:
    """A wildcard string as a regex: `*` is any run of characters, `\\*` a literal star, `\\\\` a backslash.
    Consecutive stars and any other escape are errors, as in EventBridge."""
    text = _require_str(arg, path, "wildcard")
    parts: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "*\\":
                raise PatternError(path, "wildcard: a backslash escapes only * or \\")
            parts.append(re.escape(text[i + 1]))
            i += 2
            continue
        if ch == "*":
            if i + 1 < len(text) and text[i + 1] == "*":
                raise PatternError(path, "wildcard: consecutive * are not allowed")
            parts.append(".*")
        else:
            parts.append(re.escape(ch))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _wildcard(arg: Any, path: str) -> ValueTest:
    return partial(_string_test, partial(_full_match, wildcard_regex(arg, path)))


def _cidr(arg: Any, path: str) -> ValueTest:
    try:
        network = ipaddress.ip_network(_require_str(arg, path, "cidr"), strict=False)
    except ValueError:
        raise PatternError(path, "cidr takes an IPv4 or IPv6 network, e.g. 10.0.0.0/24") from None
    return partial(_string_test, partial(_in_network, network))


def _bound(op: Any, n: Any, path: str) -> tuple[str, float]:
    if op not in NUMERIC_OPERATORS or not is_number(n):
        raise PatternError(path, "numeric takes operator/number pairs, e.g. ['>=', 50] or ['>', 0, '<=', 5]")
    if abs(n) > NUMERIC_LIMIT:
        raise PatternError(path, f"numeric values must lie within ±{NUMERIC_LIMIT:.1e}")
    return op, n


def _in_range(lo: float, lo_op: str, hi: float, hi_op: str, value: Any) -> bool:
    if not is_number(value) or abs(value) > NUMERIC_LIMIT:
        return False
    above = value > lo if lo_op == ">" else value >= lo
    below = value < hi if hi_op == "<" else value <= hi
    return above and below


def _numeric(arg: Any, path: str) -> ValueTest:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise PatternError(path, "numeric takes operator/number pairs, e.g. ['>=', 50] or ['>', 0, '<=', 5]")
    op, n = _bound(arg[0], arg[1], path)
    if len(arg) == 2:
        if op == "=":
            return partial(_in_range, n, ">=", n, "<=")
        if op in LOWER_BOUNDS:
            return partial(_in_range, n, op, math.inf, "<")
        return partial(_in_range, -math.inf, ">", n, op)
    hi_op, hi = _bound(arg[2], arg[3], path)
    if op not in LOWER_BOUNDS or hi_op not in UPPER_BOUNDS:
        raise PatternError(path, "a numeric range is a lower bound (> or >=) then an upper bound (< or <=)")
    if not n < hi:
        raise PatternError(path, f"numeric range: the lower bound {n!r} must be below the upper bound {hi!r}")
    return partial(_in_range, n, op, hi, hi_op)


def _anything_but_values(arg: Any, path: str) -> ValueTest:
    values = arg if isinstance(arg, list) else [arg]
    strings = all(isinstance(v, str) for v in values)
    numbers = all(is_number(v) for v in values)
    if not values or not (strings or numbers):
        raise PatternError(
            path,
            "anything-but takes a string, a number, a list of only strings or only numbers, or one of "
            f"{{{', '.join(sorted(ANYTHING_BUT_FORMS))}: ...}}",
        )
    if numbers and any(abs(v) > NUMERIC_LIMIT for v in values):
        raise PatternError(path, f"anything-but numbers must lie within ±{NUMERIC_LIMIT:.1e}")
    return partial(_not, partial(_excluded, tuple(values)))


def _anything_but(arg: Any, path: str) -> ValueTest:
    if not isinstance(arg, dict):
        return _anything_but_values(arg, path)
    if len(arg) != 1 or next(iter(arg)) not in ANYTHING_BUT_FORMS:
        raise PatternError(path, f"anything-but takes one of {', '.join(sorted(ANYTHING_BUT_FORMS))} in a mapping")
    name, inner = next(iter(arg.items()))
    if name in ("prefix", "suffix"):
        if isinstance(inner, dict):
            raise PatternError(path, f"anything-but {name} takes a string")
        test = _affix(name, inner, path, non_empty=True)
    elif name == "wildcard":
        test = _wildcard(inner, path)
    else:
        folded = {_require_str(v, path, "anything-but equals-ignore-case").lower() for v in _as_list(inner, path)}
        test = partial(_string_test, partial(_folded_in, frozenset(folded)))
    return partial(_not, test)


def _as_list(arg: Any, path: str) -> list[Any]:
    values = arg if isinstance(arg, list) else [arg]
    if not values:
        raise PatternError(path, "an empty list is not allowed")
    return values


def compile_operator(entry: dict[Any, Any], path: str) -> ValueTest | Exists:
    """One `{operator: argument}` entry of a value list, checked and compiled; `PatternError` names `path`."""
    if len(entry) != 1 or next(iter(entry)) not in OPERATORS:
        raise PatternError(
            path,
            f"a mapping inside a value list is a content filter with one of {', '.join(sorted(OPERATORS))}; "
            f"got {sorted(map(str, entry))}",
        )
    name, arg = next(iter(entry.items()))
    if name == "exists":
        if not isinstance(arg, bool):
            raise PatternError(path, "exists takes true or false")
        return Exists(arg)
    builders: dict[str, Callable[[Any, str], ValueTest]] = {
        "prefix": partial(_affix, "prefix"),
        "suffix": partial(_affix, "suffix"),
        "equals-ignore-case": _ignore_case,
        "wildcard": _wildcard,
        "cidr": _cidr,
        "numeric": _numeric,
        "anything-but": _anything_but,
    }
    return builders[name](arg, path)
