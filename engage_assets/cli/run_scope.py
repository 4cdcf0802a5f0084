"""What `engage run` runs: the warehouse it uses (and whether it may generate one), the programs (`--program`) and the
partition of each (`--partition`).  Every mistake is found here, before the generator, dbt or a model has run, and
is a `RunScopeError` whose message names the program, the partition or the setting."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from engage_assets.assets.program.partitions import partitions_for
from engage_assets.demo.datagen.load import NotAGeneratedWarehouse, refuse_foreign
from engage_assets.domain.config import ProgramConfig, ReactiveProgram
from engage_assets.settings import Settings

Program = ProgramConfig | ReactiveProgram


class RunScopeError(ValueError):
    """A run that cannot be what was asked: its message is for the person who typed the command."""


@dataclass(frozen=True)
class RunScope:
    """The programs one `engage run` runs, and each batch program's partition (None: its latest complete one)."""

    batch: list[ProgramConfig]
    reactive: list[ReactiveProgram]
    partitions: dict[str, str | None] = field(default_factory=dict)
    selected: bool = False  # `--program` named them (else: every enabled program)

    @property
    def groups(self) -> list[str]:
        """The Dagster groups of the programs in scope (their `<group>_deliver` jobs deliver)."""
        return [p.group for p in (*self.batch, *self.reactive)]


def select_programs(programs: Sequence[Program], wanted: Sequence[str]) -> list[Program]:
    """The programs named by id (`proactive-refunds`) or group (`proactive_refunds`); all when none are named."""
    if not wanted:
        return list(programs)
    by_name = {name: p for p in programs for name in (p.programId, p.group)}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        known = ", ".join(sorted(p.programId for p in programs))
        raise RunScopeError(f"no program {', '.join(map(repr, unknown))}: the programs are {known}")
    return list({by_name[w].programId: by_name[w] for w in wanted}.values())


def _key(day: date) -> str:
    return day.isoformat()


def partition_problem(program: ProgramConfig, key: str, now: datetime | None = None) -> str | None:
    """Why `key` is not a partition of the program that can run now (None: it is one), naming the program, its
    cadence and the nearest partitions."""
    name = f"program {program.programId!r}"
    try:
        day = date.fromisoformat(key)
    except ValueError:
        return f"{name}: partition {key!r} is not a date (YYYY-MM-DD)"
    parts = partitions_for(program)
    cadence = f"its batchSchedule {program.batchSchedule!r} (cron {program.cron!r})"
    if day < program.partitionsStart:
        return f"{name}: {key} is before its first partition (partitionsStart {program.partitionsStart})"
    # The partition whose window holds the end of that day: `key` itself when the day is on the program's cadence.
    end_of_day = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, microseconds=-1)
    holding = parts.get_partition_key_for_timestamp(end_of_day.timestamp())
    window = parts.time_window_for_partition_key(holding)
    if holding != key:
        return (
            f"{name} is partitioned by {cadence}: {key} is not one of its partitions "
            f"(the nearest are {holding} and {_key(window.end.date())})"
        )
    now = now or datetime.now(UTC)
    if window.end > now:
        return f"{name}: partition {key} is not complete yet (its window ends {window.end:%Y-%m-%d %H:%M} UTC)"
    return None


def run_scope(programs: Sequence[Program], wanted: Sequence[str], partition: str | None) -> RunScope:
    """The programs and partitions of a run; a program named that cannot take `partition` (a monthly program
    given a Thursday, a reactive program given any) is an error naming it, before anything runs."""
    chosen = select_programs(programs, wanted)
    batch = [p for p in chosen if isinstance(p, ProgramConfig)]
    reactive = [p for p in chosen if isinstance(p, ReactiveProgram)]
    if partition is not None:
        problems = [problem for p in batch if (problem := partition_problem(p, partition))]
        if wanted:
            problems += [
                f"program {p.programId!r} is reactive (it decides events as they come): it has no partition {partition}"
                for p in reactive
            ]
        if problems:
            hint = "" if wanted else "\n(`--program P` runs only the programs named)"
            raise RunScopeError("\n".join(problems) + hint)
    return RunScope(
        batch=batch,
        reactive=reactive,
        partitions={p.programId: partition for p in batch},
        selected=bool(wanted),
    )


def should_generate(settings: Settings, regenerate: bool) -> bool:
    """Whether `engage run` writes the demo warehouse: only at the default location (ENGAGE_WAREHOUSE_PATH unset),
    when the file is missing or `--regenerate` asks (the generator itself refuses a file it did not write).  A
    warehouse named by ENGAGE_WAREHOUSE_PATH is the user's: never generated over or beside; missing, an error."""
    path = settings.warehouse_path
    if settings.warehouse_is_default:
        if regenerate:
            try:
                refuse_foreign(path)  # your own warehouse put at the default location is never overwritten either
            except NotAGeneratedWarehouse as e:
                raise RunScopeError(f"--regenerate: {e}") from None
        return regenerate or not path.exists()
    if regenerate:
        raise RunScopeError(
            f"--regenerate writes the demo warehouse, and ENGAGE_WAREHOUSE_PATH names your own ({path}): "
            "unset ENGAGE_WAREHOUSE_PATH to run on the generated demo warehouse"
        )
    if not path.exists():
        raise RunScopeError(
            f"ENGAGE_WAREHOUSE_PATH names {path}, which does not exist; Engage never generates a warehouse there "
            "(unset ENGAGE_WAREHOUSE_PATH for the generated demo warehouse)"
        )
    return False


def generate_demo_warehouse(settings: Settings, scale: float, seed: int) -> None:
    """Write the demo warehouse's raw tables at the settings' (default) location, printing the counts; call it only
    where `should_generate` said so."""
    from engage_assets.demo.datagen import generate

    print(f"Generating the embedded warehouse at {settings.warehouse_path} (scale {scale}) ...")
    t0 = time.perf_counter()
    counts = generate(settings.warehouse_path, scale=scale, seed=seed)
    for name, n in counts.items():
        print(f"   raw.{name:<22}{n:>12,}")
    print(f"   generated in {time.perf_counter() - t0:.1f} s")


def program_asset_keys(defs: dg.Definitions, scope: RunScope) -> list[dg.AssetKey]:
    """Every asset of the programs in scope (their groups' keys)."""
    groups = set(scope.groups)
    return [k for k in defs.resolve_all_asset_keys() if k.path[0] in groups]


def dbt_models_read_by(defs: dg.Definitions, job: dg.JobDefinition, scope: RunScope) -> list[dg.AssetKey]:
    """The warehouse job's models the programs in scope read, directly or through other models (with `--program`,
    a warehouse needs only the raw tables those programs read)."""
    graph = defs.resolve_asset_graph()
    upstream = dg.AssetSelection.assets(*program_asset_keys(defs, scope)).upstream().resolve(graph)
    return sorted(k for k in job.asset_layer.selected_asset_keys if k in upstream)
