"""`engage validate`, `engage new-program`, `engage config-docs`: program configs without running anything.

engage validate [FILE|DIR …]      every program config (default: the settings' program_configs folder): fields,
                                  filter expressions, messages (present, compiling, known placeholders),
                                  programIds unique; exit 1 with the list of errors
engage new-program NAME [--reactive] [--dir DIR]
                                  a commented starting config (batch by default) that passes validate as written
engage config-docs [--check]      rewrite docs/config-reference.md and program_configs/schema.json from the
                                  models (--check: exit 1 if either is stale, write nothing)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from importlib import resources
from pathlib import Path

from engage_assets.domain.config import ConfigError, load_program
from engage_assets.domain.config.reference import render_reference
from engage_assets.domain.config.schema import program_json_schema
from engage_assets.domain.template_check import template_problems
from engage_assets.domain.template_sources import template_roots
from engage_assets.settings import PROJECT_ROOT, program_config_dir

REFERENCE_FILE = Path("docs") / "config-reference.md"
SCHEMA_FILE = Path("program_configs") / "schema.json"
SCHEMA_COMMENT = "# yaml-language-server: $schema=./schema.json"


def config_files(paths: list[str]) -> list[Path]:
    """The YAML files named, a folder's `*.yaml`, or (none named) the settings' program_configs folder's."""
    targets = [Path(p) for p in paths] or [program_config_dir()]
    files: list[Path] = []
    for target in targets:
        files += sorted(target.glob("*.yaml")) if target.is_dir() else [target]
    return files


def validation_errors(files: list[Path]) -> tuple[list[str], list[str]]:
    """(one `ok` line per valid file, the errors): each file loaded as at startup, then its messages checked."""
    ok: list[str] = []
    errors: list[str] = []
    seen: dict[str, Path] = {}
    for path in files:
        if not path.is_file():
            errors.append(f"{path}: no such file")
            continue
        try:
            program = load_program(path)
        except ConfigError as e:
            errors.append(str(e))
            continue
        problems = template_problems(program, template_roots(path.parent))
        if program.programId in seen:
            problems.append(f"programId {program.programId!r} is also defined in {seen[program.programId]}")
        seen.setdefault(program.programId, path)
        if problems:
            errors.append("\n".join([f"{path}: invalid messages", *(f"  {p}" for p in problems)]))
            continue
        state = "" if program.enabled else ", disabled"
        ok.append(
            f"ok  {path}: {program.programId} ({program.kind}{state}; {len(program.filterChain)} filters, "
            f"{len(program.channels)} channels)"
        )
    return ok, errors


def cmd_validate(args: argparse.Namespace) -> int:
    """Check configs, templates and expressions; exit 1 with the errors."""
    files = config_files(args.files)
    if not files:
        print(f"engage validate: no program configs in {' '.join(args.files) or program_config_dir()}", file=sys.stderr)
        return 1
    ok, errors = validation_errors(files)
    print("\n".join(ok) if ok else "", end="\n" if ok else "")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        print(f"{len(errors)} of {len(files)} program config(s) invalid", file=sys.stderr)
        return 1
    print(f"{len(files)} program config(s) valid")
    return 0


def program_id_of(name: str) -> str:
    """`Loyalty Boost` → `loyalty-boost`; ValueError when nothing usable is left."""
    program_id = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not re.fullmatch(r"[a-z][a-z0-9-]*", program_id):
        raise ValueError(f"{name!r} makes no program id (lower-case letters, digits and dashes, a letter first)")
    return program_id


def starting_config(name: str, reactive: bool) -> str:
    """The commented starting config for a program called `name`."""
    template = resources.files("engage_assets.cli").joinpath(
        "program_templates", f"{'reactive' if reactive else 'batch'}.yaml"
    )
    program_name = " ".join(name.replace("-", " ").replace("_", " ").split()).title()
    return template.read_text().replace("__PROGRAM_ID__", program_id_of(name)).replace("__PROGRAM_NAME__", program_name)


def cmd_new_program(args: argparse.Namespace) -> int:
    """Write `<dir>/<program_id>.yaml`; never over an existing file."""
    try:
        program_id = program_id_of(args.name)
    except ValueError as e:
        print(f"engage new-program: {e}", file=sys.stderr)
        return 2
    folder = Path(args.dir) if args.dir else program_config_dir()
    path = folder / f"{program_id.replace('-', '_')}.yaml"
    if path.exists():
        print(f"engage new-program: {path} exists; choose another name or remove it", file=sys.stderr)
        return 1
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(starting_config(args.name, args.reactive))
    kind = "reactive" if args.reactive else "batch"
    print(f"wrote {path}: a {kind} program {program_id!r}, disabled; edit it, then: engage validate {path}")
    if not (folder / "schema.json").exists():
        print(f"(editors: copy {PROJECT_ROOT / SCHEMA_FILE} beside it for completion)")
    return 0


def generated_files(root: Path = PROJECT_ROOT) -> dict[Path, str]:
    """The files `engage config-docs` writes, with their content."""
    return {
        root / REFERENCE_FILE: render_reference(),
        root / SCHEMA_FILE: json.dumps(program_json_schema(), indent=2, ensure_ascii=False) + "\n",
    }


def cmd_config_docs(args: argparse.Namespace) -> int:
    """Rewrite the reference and the schema (or, with --check, say which is stale)."""
    stale = [path for path, text in generated_files().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} is stale: run `engage config-docs`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in generated_files().items():
        path.write_text(text)
        print(f"{'wrote' if path in stale else 'unchanged'} {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register validate, new-program and config-docs on the `engage` parser."""
    validate = sub.add_parser(
        "validate", help="check program configs, messages and filter expressions; exit 1 on errors"
    )
    validate.add_argument("files", nargs="*", help="YAML files or folders (default: the program_configs folder)")
    validate.set_defaults(fn=cmd_validate)
    new = sub.add_parser("new-program", help="write a commented starting config that passes `engage validate`")
    new.add_argument("name", help="the program's name, e.g. loyalty-boost (its programId and file name)")
    new.add_argument("--reactive", action="store_true", help="an event-driven program instead of a batch one")
    new.add_argument("--dir", default=None, help="where to write it (default: the program_configs folder)")
    new.set_defaults(fn=cmd_new_program)
    docs = sub.add_parser("config-docs", help="regenerate docs/config-reference.md and program_configs/schema.json")
    docs.add_argument("--check", action="store_true", help="exit 1 if either is stale; write nothing")
    docs.set_defaults(fn=cmd_config_docs)
