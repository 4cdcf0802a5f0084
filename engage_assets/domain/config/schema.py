"""The program config's JSON Schema, for editors: `program_configs/schema.json` (written by `engage config-docs`).

Each program YAML names it in its first line (`# yaml-language-server: $schema=./schema.json`), so an editor with
the YAML language server completes field names and shows each field's description while the file is written.  The
schema is pydantic's for the two program kinds, with what pydantic cannot say on its own added as `if`/`then`:
a channel's `config` takes only its type's fields, and a filter's `parameters` are its rule's.  Loading the config
stays the authority (cross-field checks, expressions, templates); the schema is the editor's first line.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from engage_assets.domain.config.channels import CHANNEL_CONFIG_MODELS
from engage_assets.domain.config.loader import PROGRAM_ADAPTER
from engage_assets.domain.filters import FILTER_RULES

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REF = "#/$defs/{model}"
BUILT_IN = ("trust", "eligibility")  # rules named by the filter's type, not by its id


def _add_model(defs: dict[str, Any], model: type[BaseModel]) -> str:
    """Put `model`'s schema (and its own definitions) into `defs`; its name."""
    schema = model.model_json_schema(ref_template=REF)
    defs.update(schema.pop("$defs", {}))
    defs[model.__name__] = schema
    return model.__name__


def _rule_condition(rule: str) -> dict[str, Any]:
    """JSON Schema that holds for a filter spec running `rule` (`FilterSpec.rule`)."""
    if rule in BUILT_IN:
        return {"properties": {"type": {"const": rule}}, "required": ["type"]}
    by_rule = {"properties": {"rule": {"const": rule}}, "required": ["rule"]}
    by_id = {
        "properties": {"type": {"const": "business-rule"}, "filterId": {"const": rule}},
        "required": ["type", "filterId"],
        "not": {"required": ["rule"]},
    }
    return {"anyOf": [by_rule, by_id]}


def _untitled(defs: dict[str, Any]) -> None:
    """Drop pydantic's field titles (`Programid`): an editor shows the field's name and description instead."""
    for model in defs.values():
        for prop in model.get("properties", {}).values():
            prop.pop("title", None)


def program_json_schema() -> dict[str, Any]:
    """The JSON Schema of a program config file (either kind)."""
    schema = PROGRAM_ADAPTER.json_schema(ref_template=REF)
    defs: dict[str, Any] = schema["$defs"]
    defs["Channel"]["allOf"] = [
        {
            "if": {"properties": {"type": {"const": channel_type}}, "required": ["type"]},
            "then": {"properties": {"config": {"$ref": REF.format(model=_add_model(defs, model))}}},
        }
        for channel_type, model in CHANNEL_CONFIG_MODELS.items()
    ]
    defs["FilterSpec"]["allOf"] = [
        {
            "if": _rule_condition(rule),
            "then": {"properties": {"parameters": {"$ref": REF.format(model=_add_model(defs, spec.params))}}},
        }
        for rule, spec in FILTER_RULES.items()
    ]
    _untitled(defs)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Engage program config",
        "description": "One program per YAML file in program_configs/: a batch program (dataConnectors, "
        "batchSchedule) or a reactive one (eventSources). Reference: docs/config-reference.md.",
        **schema,
        "$defs": dict(sorted(defs.items())),
    }
