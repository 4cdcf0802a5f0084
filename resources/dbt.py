"""The dbt project and the `dbt` CLI resource: the manifest prepared on demand, one target per environment.

The manifest (and so the asset graph) is always parsed with the `local` target: it needs no credentials, and the
graph is the same whichever warehouse a run writes to.  The runtime target (`local` DuckDB or `prod` Snowflake) is
only a property of the `dbt` resource.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliInvocation, DbtCliResource, DbtProject

from engage_assets.settings import PROJECT_ROOT, get_settings

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
MANIFEST_TARGET = "local"
TARGETS = ("local", "prod")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, target=MANIFEST_TARGET)


def _dbt_executable() -> str:
    """The `dbt` beside this interpreter (a venv that is not on PATH), else whatever `dbt` is on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


SOURCE_GLOBS = ("dbt_project.yml", "models/**/*", "macros/**/*", "seeds/**/*", "snapshots/**/*", "tests/**/*")


def _sources_newer_than(manifest: Path) -> bool:
    """Whether a model, macro or project file changed after the manifest was written (a model added since the
    last parse would otherwise be missing from the asset graph until someone deletes the manifest)."""
    built = manifest.stat().st_mtime
    root = Path(dbt_project.project_dir)
    return any(f.stat().st_mtime > built for glob in SOURCE_GLOBS for f in root.glob(glob) if f.is_file())


def prepare_manifest(force: bool = False) -> Path:
    """Build `dbt_project/target/manifest.json` with `dbt parse` if it is missing or older than a model, macro or
    project file (or always, with force).

    Returns the manifest's path. dbt parses into a private target folder and the manifest is moved into
    place atomically, so several processes preparing at once never read a half-written file. (dagster-dbt's
    own preparer would look for `dbt` on PATH, which a virtualenv that is not activated does not put there.)
    """
    manifest_path = dbt_project.manifest_path
    if manifest_path.exists() and not force and not _sources_newer_than(manifest_path):
        return manifest_path
    target_dir = manifest_path.parent
    target_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=target_dir))
    try:
        partial = target_dir / "partial_parse.msgpack"
        if partial.exists():  # reuse dbt's parse cache: a re-parse takes a second instead of several
            shutil.copy2(partial, scratch / partial.name)
        # A plain `dbt parse` (not DbtCliResource.cli, which also probes `dbt --version` and opens an adapter).
        parse = subprocess.run(
            [
                _dbt_executable(),
                "parse",
                "--quiet",
                "--project-dir",
                str(dbt_project.project_dir),
                "--profiles-dir",
                str(dbt_project.profiles_dir),
                "--target",
                MANIFEST_TARGET,
                "--target-path",
                str(scratch),
            ],
            cwd=dbt_project.project_dir,
            env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
            capture_output=True,
            text=True,
        )
        if parse.returncode != 0:
            raise RuntimeError(f"dbt parse failed ({parse.returncode}):\n{parse.stdout}{parse.stderr}")
        if (scratch / partial.name).exists():
            os.replace(scratch / partial.name, partial)
        os.replace(scratch / "manifest.json", manifest_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest_path


@cache
def ensure_manifest() -> Path:
    """The manifest for building definitions: re-parsed under `dagster dev` (so edits to the models show up),
    otherwise built once when missing (a fresh clone) and used as is."""
    return prepare_manifest(force=dbt_project.preparer.using_dagster_dev())


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` with `values` for the block (dagster-dbt hands dbt a copy of it), then as it was."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class EngageDbtCliResource(DbtCliResource):
    """dagster-dbt's `dbt` CLI resource, opening the warehouse the settings name: every invocation gets the settings'
    absolute warehouse path (`Settings.dbt_environment`), so dbt builds the file the connectors, the models and the
    exports read, however `dagster dev`, `dagster asset materialize` or `engage run` was started and wherever a
    relative ENGAGE_WAREHOUSE_PATH or ENGAGE_HOME points from."""

    def cli(self, args: Any, **kwargs: Any) -> DbtCliInvocation:
        with _environment(get_settings().dbt_environment()):
            return super().cli(args, **kwargs)


def dbt_resource(target: str = "local") -> DbtCliResource:
    """The `dbt` resource for a target of dbt_project/profiles.yml: "local" (DuckDB) or "prod" (Snowflake)."""
    if target not in TARGETS:
        raise ValueError(f"dbt target must be one of {TARGETS}, got {target!r}")
    # DbtCliResource's own __init__ takes a DbtProject; mypy's pydantic view of the subclass knows only `str`.
    return EngageDbtCliResource(
        project_dir=dbt_project,  # type: ignore[arg-type]
        target=target,
        dbt_executable=_dbt_executable(),
    )


if __name__ == "__main__":
    print(prepare_manifest(force="--force" in sys.argv[1:]))
