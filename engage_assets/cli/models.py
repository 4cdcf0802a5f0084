"""`engage model list` and `engage model rollback`: the registry's models over time, from the command line.

    engage model list [--program P] [--json]            every model: its current version, AUC beside the naive
                                                        baseline's, how many versions were promoted, the last decision
    engage model rollback MODEL [--program P] [--to V]  make the previous promoted version (or V) current again and
                                                        deploy it (locally: nothing to deploy; in production: its
                                                        SageMaker endpoint); recorded in the registry's log

`--program` is needed only when two programs train a model of the same id (offer-effectiveness-v2).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from engage_assets.domain.config import load_programs
from engage_assets.domain.models import ModelRegistry
from engage_assets.settings import get_settings, program_config_dir


def _registry() -> ModelRegistry:
    return ModelRegistry(get_settings().model_root)


def model_rows(registry: ModelRegistry, program: str | None = None) -> list[dict[str, Any]]:
    """One row per model in the registry (of `program` when given)."""
    rows = []
    for program_id, model_id in registry.models():
        if program and program_id != program:
            continue
        current = registry.current(program_id, model_id)
        metrics = registry.metadata(program_id, model_id, current.version)["metrics"] if current else {}
        history = registry.history(program_id, model_id)
        rows.append(
            {
                "program": program_id,
                "model": model_id,
                "current": current.version if current else None,
                "roc_auc": metrics.get("roc_auc"),
                "baseline_roc_auc": metrics.get("baseline_roc_auc"),
                "promoted_versions": len(registry.promoted_versions(program_id, model_id)),
                "last": history[-1] if history else None,
            }
        )
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def cmd_list(args: argparse.Namespace) -> int:
    """Print every model's current version and its last decision."""
    rows = model_rows(_registry(), args.program)
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return 0
    if not rows:
        print("no model in the registry yet: run the retraining jobs (engage run trains them)")
        return 0
    print(f"{'program':<22} {'model':<24} {'current':<17} {'auc':>6} {'base':>6} {'promoted':>8}  last decision")
    for r in rows:
        last = r["last"] or {}
        print(
            f"{r['program']:<22} {r['model']:<24} {r['current'] or 'none':<17} {_fmt(r['roc_auc']):>6} "
            f"{_fmt(r['baseline_roc_auc']):>6} {r['promoted_versions']:>8}  {last.get('at', '')} "
            f"{last.get('action', 'train')}: {last.get('reason', '')}"
        )
    return 0


def resolve_program(registry: ModelRegistry, model_id: str, program: str | None) -> str:
    """The program whose `model_id` is meant: `program`, or the only one with that model; ValueError otherwise."""
    owners = [p for p, m in registry.models() if m == model_id]
    if program:
        if program not in owners:
            raise ValueError(f"program {program!r} has no model {model_id!r} in the registry")
        return program
    if len(owners) != 1:
        found = ", ".join(owners) if owners else "none"
        raise ValueError(f"model {model_id!r}: name the program with --program (programs with it: {found})")
    return owners[0]


def _endpoint(program_id: str, model_id: str) -> str | None:
    """The endpoint the program's config names for the model (None: the registry's default sagemaker://<id>)."""
    for program in load_programs(program_config_dir()):
        if program.programId == program_id:
            for spec in program.scoringModels:
                if spec.modelId == model_id:
                    return spec.endpoint
    return None


def cmd_rollback(args: argparse.Namespace) -> int:
    """Make an earlier promoted version current and deploy it; 1 with the reason when that is not possible."""
    from resources.by_env import build_resources

    registry = _registry()
    try:
        program_id = resolve_program(registry, args.model, args.program)
        record = registry.rollback(program_id, args.model, to=args.to)
    except (LookupError, ValueError) as exc:
        print(f"engage model rollback: {exc}", file=sys.stderr)
        return 1
    ref = registry.current(program_id, args.model, endpoint=_endpoint(program_id, args.model))
    assert ref is not None  # rollback just made it current
    deployed = build_resources(get_settings())["model_deploy"].deploy(ref)
    print(f"{program_id}/{args.model}: {record['reason']}; deployed: {json.dumps(deployed, sort_keys=True)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `engage model list|rollback`."""
    model = sub.add_parser("model", help="the trained models: list them, roll one back")
    cmds = model.add_subparsers(dest="model_cmd", required=True)
    listing = cmds.add_parser("list", help="every model: current version, AUC and baseline, last decision")
    listing.add_argument("--program", help="only this program's models (programId)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(fn=cmd_list)
    rollback = cmds.add_parser("rollback", help="make the previous promoted version (or --to) current and deploy it")
    rollback.add_argument("model", help="the modelId, e.g. churn-risk-v6")
    rollback.add_argument("--program", help="the programId, when several programs train this modelId")
    rollback.add_argument("--to", metavar="VERSION", help="an earlier promoted version (default: the previous one)")
    rollback.set_defaults(fn=cmd_rollback)
