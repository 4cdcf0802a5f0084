"""EventBridge event patterns: checked and compiled once, then matched locally with EventBridge's semantics.

A pattern has the shape of the events it matches: a nested mapping whose leaves are non-empty lists.  An event
matches when every field the pattern names matches (AND; fields the pattern does not name are ignored); a field
matches when any of its leaf values (each element, if the event holds an array) matches any entry of the list.
`"$or": [pattern, pattern, ...]` (two or more) matches when any alternative does.  List entries are literals or
content filters (`operators`: prefix, suffix, equals-ignore-case, anything-but, numeric, exists, cidr, wildcard).
An object in the event is not a leaf value: a leaf list names a field holding strings, numbers, booleans or null
(or arrays of them); `{"exists": false}` matches a field that is absent or holds only objects or empty arrays.  A
nested pattern under an array of objects must match within one element (array-consistent matching).

Engage's reading of the spec — `normalize_pattern`.  The abandoned-cart spec writes `cartValue: [50, 999999]  # Min
$50`.  Under EventBridge semantics that list is an exact match on 50 or 999999; the spec means a range.  Engage reads
exactly this form — a leaf list of exactly two plain numbers `[lo, hi]` with `lo < hi`, anywhere under the event's
`detail` — as the inclusive range `[{"numeric": [">=", lo, "<=", hi]}]`.  Nothing else is rewritten (a list of
three numbers, `[hi, lo]`, numbers beyond EventBridge's ±5.0e9 numeric range, or a pair outside `detail` keep their
exact-match meaning).  The normalized pattern is the one deployed to EventBridge in production and the one matched
locally, so an event that matches here matches there.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from engage_assets.domain.events.operators import (
    NUMERIC_LIMIT,
    OPERATORS,
    Exists,
    PatternError,
    ValueTest,
    check_literal,
    compile_operator,
    is_number,
    same_value,
)

OR_KEY = "$or"
DETAIL_KEY = "detail"


@dataclass(frozen=True)
class LeafMatcher:
    """A compiled leaf list: value tests, plus whether `exists: true` / `exists: false` appeared in it."""

    tests: tuple[ValueTest, ...]
    if_present: bool
    if_absent: bool

    def matches(self, values: list[Any]) -> bool:
        """Whether a field with these leaf values (empty: absent) matches the list."""
        if not values:
            return self.if_absent
        return self.if_present or any(test(v) for v in values for test in self.tests)


@dataclass(frozen=True)
class NodeMatcher:
    """A compiled mapping: every field must match, and one alternative of every `$or`."""

    fields: tuple[tuple[str, LeafMatcher | NodeMatcher], ...]
    alternatives: tuple[tuple[NodeMatcher, ...], ...]

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether the event object `obj` matches this part of the pattern."""
        for key, sub in self.fields:
            raw = obj.get(key, _ABSENT)
            if isinstance(sub, LeafMatcher):
                if not sub.matches(list(_leaf_values(raw))):
                    return False
            elif not any(sub.matches(child) for child in _objects(raw)):
                return False
        return all(any(alt.matches(obj) for alt in alts) for alts in self.alternatives)


_ABSENT = object()


def _leaf_values(raw: Any) -> Iterator[Any]:
    """The leaf values of a field: its value, or the scalars in its (nested) arrays; objects are not leaves."""
    if raw is _ABSENT or isinstance(raw, Mapping):
        return
    if isinstance(raw, list):
        for item in raw:
            yield from _leaf_values(item)
    else:
        yield raw


def _objects(raw: Any) -> list[Mapping[str, Any]]:
    """The objects a nested pattern applies to: the field's object, or each object in its (nested) arrays; an
    empty object when there is none, so only `exists: false` leaves can match."""
    if isinstance(raw, Mapping):
        return [raw]
    found: list[Mapping[str, Any]] = []
    if isinstance(raw, list):
        for item in raw:
            found.extend(o for o in _objects(item) if o)
    return found or [{}]


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _compile_leaf(values: list[Any], path: str) -> LeafMatcher:
    if not values:
        raise PatternError(path, "an empty list matches no event")
    tests: list[ValueTest] = []
    exists: set[bool] = set()
    for i, item in enumerate(values):
        at = _join(path, i)
        if isinstance(item, dict):
            compiled = compile_operator(item, at)
            if isinstance(compiled, Exists):
                exists.add(compiled.present)
            else:
                tests.append(compiled)
        else:
            check_literal(item, at)
            tests.append(partial(same_value, item))
    return LeafMatcher(tuple(tests), if_present=True in exists, if_absent=False in exists)


def _compile_or(value: Any, path: str) -> tuple[NodeMatcher, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise PatternError(path, "takes a list of at least two patterns")
    return tuple(_compile_node(alt, _join(path, i), in_or=True) for i, alt in enumerate(value))


def _compile_node(pattern: Any, path: str, *, in_or: bool = False) -> NodeMatcher:
    if not isinstance(pattern, dict) or not pattern:
        raise PatternError(path, "must be a non-empty mapping")
    fields: list[tuple[str, LeafMatcher | NodeMatcher]] = []
    alternatives: list[tuple[NodeMatcher, ...]] = []
    for key, value in pattern.items():
        at = _join(path, key)
        if not isinstance(key, str):
            raise PatternError(at, "field names are strings")
        if key == OR_KEY:
            alternatives.append(_compile_or(value, at))
        elif in_or and key in OPERATORS:
            raise PatternError(at, f"{key!r} is an operator, not a field name, inside {OR_KEY}")
        elif isinstance(value, dict):
            fields.append((key, _compile_node(value, at, in_or=in_or)))
        elif isinstance(value, list):
            fields.append((key, _compile_leaf(value, at)))
        else:
            raise PatternError(at, f"must be a list of values (write [{value!r}]) or a nested mapping")
    return NodeMatcher(tuple(fields), tuple(alternatives))


class EventPattern:
    """A checked, compiled event pattern.  `matches(event)` answers as EventBridge would; `pattern` is the JSON
    mapping it was compiled from (what a rule deploys)."""

    __slots__ = ("_root", "_pattern")

    def __init__(self, root: NodeMatcher, pattern: dict[str, Any]) -> None:
        self._root = root
        self._pattern = pattern

    @property
    def pattern(self) -> dict[str, Any]:
        """A copy of the pattern as a JSON-compatible mapping."""
        return copy.deepcopy(self._pattern)

    def to_json(self) -> str:
        """The pattern as the JSON text an EventBridge rule takes (`EventPattern`)."""
        return json.dumps(self._pattern, separators=(",", ":"))

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the event (the envelope, with `source`, `detail-type`, `detail`, …) matches the pattern."""
        return isinstance(event, Mapping) and self._root.matches(event)

    def __repr__(self) -> str:
        return f"EventPattern({self.to_json()})"


def compile_pattern(pattern: Any) -> EventPattern:
    """Check `pattern` against EventBridge's pattern grammar and compile it; `PatternError` (a `ValueError`) names
    the dotted path of the first bad part, e.g. `detail.cartValue.0`."""
    root = _compile_node(pattern, "")
    return EventPattern(root, copy.deepcopy(pattern))


def _is_range_pair(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(is_number(n) and abs(n) <= NUMERIC_LIMIT for n in value)
        and value[0] < value[1]
    )


def _normalize(node: dict[Any, Any], *, in_detail: bool, at_root: bool) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in node.items():
        if key == OR_KEY and isinstance(value, list):
            out[key] = [
                _normalize(alt, in_detail=in_detail, at_root=at_root) if isinstance(alt, dict) else copy.deepcopy(alt)
                for alt in value
            ]
        elif isinstance(value, dict):
            out[key] = _normalize(value, in_detail=in_detail or (at_root and key == DETAIL_KEY), at_root=False)
        elif in_detail and _is_range_pair(value):
            out[key] = [{"numeric": [">=", value[0], "<=", value[1]]}]
        else:
            out[key] = copy.deepcopy(value)
    return out


def normalize_pattern(pattern: Any) -> Any:
    """Engage's reading of a config's pattern (see the module docstring): every leaf `[lo, hi]` of two plain numbers
    with `lo < hi` under `detail` becomes `[{"numeric": [">=", lo, "<=", hi]}]`; everything else is kept as written.
    Returns a new pattern (the input is not changed); anything but a mapping comes back as is, for
    `compile_pattern` to reject."""
    if not isinstance(pattern, dict):
        return pattern
    return _normalize(pattern, in_detail=False, at_root=True)
