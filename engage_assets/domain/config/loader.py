"""Loading program YAML: which kind of program a file is, validation, and errors that name file, field and reason.

The spec's YAML has no kind field: a program with `dataConnectors` is a batch program (`ProgramConfig`), one with
`eventSources` a reactive program (`ReactiveProgram`).  `AnyProgram` is that discriminated union; a file with both
or neither fails with a message that says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from engage_assets.domain.config.batch import ProgramConfig
from engage_assets.domain.config.common import ConfigError
from engage_assets.domain.config.inert import refused_values
from engage_assets.domain.config.reactive import ReactiveProgram
from engage_assets.domain.template_check import template_problems
from engage_assets.domain.template_sources import missing_message_parts, template_roots

BATCH_KEY, REACTIVE_KEY = "dataConnectors", "eventSources"


def program_kind(value: Any) -> str | None:
    """`batch` or `reactive` by the presence of `dataConnectors` / `eventSources`; None when both or neither."""
    if isinstance(value, ProgramConfig | ReactiveProgram):
        return value.kind
    if not isinstance(value, dict):
        return None
    batch, reactive = BATCH_KEY in value, REACTIVE_KEY in value
    if batch == reactive:
        return None
    return ProgramConfig.kind if batch else ReactiveProgram.kind


def kind_problem(raw: dict[str, Any]) -> str:
    """Why `program_kind` found no kind, for people."""
    if BATCH_KEY in raw and REACTIVE_KEY in raw:
        return (
            f"has both {BATCH_KEY} (a batch program) and {REACTIVE_KEY} (a reactive program): "
            "a program is one or the other"
        )
    return (
        f"has neither {BATCH_KEY} (a batch program, with batchSchedule) nor {REACTIVE_KEY} "
        "(a reactive program): one of them says where the candidates come from"
    )


AnyProgram = Annotated[
    Annotated[ProgramConfig, Tag(ProgramConfig.kind)] | Annotated[ReactiveProgram, Tag(ReactiveProgram.kind)],
    Discriminator(
        program_kind,
        custom_error_type="program_kind",
        custom_error_message=f"a program needs exactly one of {BATCH_KEY} (batch) and {REACTIVE_KEY} (reactive)",
    ),
]
PROGRAM_ADAPTER: TypeAdapter[ProgramConfig | ReactiveProgram] = TypeAdapter(AnyProgram)


def format_error(path: Path, err: ValidationError) -> str:
    """One line per problem: the field path (without the union's kind tag) and the reason."""
    lines = [f"{path}: invalid program config"]
    for e in err.errors():
        loc = list(e["loc"])
        if loc and loc[0] in (ProgramConfig.kind, ReactiveProgram.kind):
            loc = loc[1:]
        where = ".".join(str(p) for p in loc) or "(root)"
        lines.append(f"  {where}: {e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


# libyaml's parser with the safe constructors, ~10x PyYAML's pure-Python one (configs load on every code load);
# the pure-Python one where PyYAML was built without libyaml.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def validate_program(raw: Any) -> ProgramConfig | ReactiveProgram:
    """A program from its parsed YAML (a mapping); raises pydantic's ValidationError."""
    return PROGRAM_ADAPTER.validate_python(raw)


def load_program(path: Path) -> ProgramConfig | ReactiveProgram:
    """The program in one YAML file; ConfigError names the file, each bad field's path and the reason.  Each
    enabled channel's message text (and an e-mail's subject) must come from the config's own text or a template
    file beside the configs (`templates/`) or among the packaged ones (`domain.template_sources`)."""
    try:
        raw = yaml.load(path.read_text(), Loader=_SAFE_LOADER)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if program_kind(raw) is None:
        raise ConfigError(f"{path}: invalid program config\n  (root): {kind_problem(raw)}")
    try:
        program = validate_program(raw)
    except ValidationError as e:
        raise ConfigError(format_error(path, e)) from None
    # Every enabled channel's message must come from somewhere now, compile and name only variables a message is
    # given: none fails at send time (2 AM) for what loading can see; no value is inert.
    roots = template_roots(path.parent)
    missing = missing_message_parts(program, roots) + refused_values(program)
    missing = missing or template_problems(program, roots)
    if missing:
        raise ConfigError("\n".join([f"{path}: invalid program config", *(f"  {m}" for m in missing)]))
    return program


def load_programs(directory: Path) -> list[ProgramConfig | ReactiveProgram]:
    """All enabled programs in `directory`, sorted by file name; programIds must be unique."""
    programs = [load_program(p) for p in sorted(directory.glob("*.yaml"))]
    seen: dict[str, str] = {}
    for p in programs:
        if p.programId in seen:
            raise ConfigError(f"programId {p.programId!r} is defined twice")
        seen[p.programId] = p.programName
    return [p for p in programs if p.enabled]
