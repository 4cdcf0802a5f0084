"""The production deployment in `deploy/`, checked without Docker, AWS or a database (the PostgreSQL run itself is
`tests/test_deploy_postgres.py`):

- `deploy/dagster.yaml` validates against Dagster's instance schema; its storage is PostgreSQL (dagster-postgres)
  with every connection setting from the environment; its run launcher is dagster-aws's `EcsRunLauncher` and builds
  from the file; its run queue and pools are the local `dagster.yaml`'s, to the letter.
- `deploy/workspace.yaml` is one gRPC code location, `engage`, found through the environment.
- `deploy/Dockerfile` parses with BuildKit's own parser (the `dockerfile` package, where it installs): python:3.11-slim, the project
  installed with the pinned constraints, a non-root user, every COPY source present, the entrypoint in the image.
- `deploy/entrypoint.sh` passes `bash -n`, and each role's command is an installed console script that accepts the
  options the script gives it (click parses them, then `--help` stops it) and names modules that exist.
- `docs/deploy.md` names every variable the processes need.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import subprocess
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from engage_assets.settings import PROD_REQUIRED

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
POSTGRES_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD")
ROLES = ("code-server", "events-code-server", "webserver", "daemon", "migrate")
LOCATIONS = {"engage_assets.definitions": "engage", "engage_assets.reactive_location": "engage_events"}


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_production_run_queue_and_pools_are_the_local_ones():
    local, prod = _yaml(ROOT / "dagster.yaml"), _yaml(DEPLOY / "dagster.yaml")
    assert prod["concurrency"] == local["concurrency"]
    assert prod["run_queue"] == local["run_queue"]


def test_the_production_instance_config_is_valid_postgres_and_ecs(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes import ConfigurableClassData

    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    for var in POSTGRES_VARS:
        monkeypatch.setenv(var, "5432" if var.endswith("PORT") else "x")
    for var, value in {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1", "ENGAGE_S3_BUCKET": "b"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # boto3 clients are built, never called
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config, _ = dagster_instance_config(str(tmp_path))  # the instance schema: raises on an unknown or bad key

    assert config["storage"] == {
        "postgres": {
            "postgres_db": {**{k: {"env": v} for k, v in _pg_fields().items()}, "scheme": "postgresql+psycopg2"}
        }
    }
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    built = {
        key: ConfigurableClassData(c["module"], c["class"], yaml.safe_dump(c.get("config") or {})).rehydrate(object)
        for key, c in ((k, config[k]) for k in ("run_launcher", "compute_logs"))
    }
    assert type(built["run_launcher"]).__name__ == "EcsRunLauncher"
    assert built["run_launcher"].secrets_tags == []  # secrets come with the daemon's task definition
    assert type(built["compute_logs"]).__name__ == "S3ComputeLogManager"
    # The run coordinator is Dagster's default queued one: no `run_coordinator` key overrides it.
    assert "run_coordinator" not in config


def _pg_fields() -> dict[str, str]:
    return {
        "hostname": "DAGSTER_PG_HOST",
        "port": "DAGSTER_PG_PORT",
        "db_name": "DAGSTER_PG_DB",
        "username": "DAGSTER_PG_USERNAME",
        "password": "DAGSTER_PG_PASSWORD",
    }


def test_the_production_workspace_is_the_engage_grpc_location(monkeypatch):
    from dagster._core.workspace.config_schema import ensure_workspace_config

    workspace = _yaml(DEPLOY / "workspace.yaml")
    monkeypatch.setenv("DAGSTER_CODE_SERVER_HOST", "engage-code.internal")
    monkeypatch.setenv("DAGSTER_CODE_SERVER_PORT", "4000")
    monkeypatch.setenv("DAGSTER_EVENTS_CODE_SERVER_HOST", "engage-events-code.internal")
    monkeypatch.setenv("DAGSTER_EVENTS_CODE_SERVER_PORT", "4001")
    ensure_workspace_config(workspace, str(DEPLOY / "workspace.yaml"))
    main, events = workspace["load_from"]
    assert main == {
        "grpc_server": {
            "host": {"env": "DAGSTER_CODE_SERVER_HOST"},
            "port": {"env": "DAGSTER_CODE_SERVER_PORT"},
            "location_name": "engage",
        }
    }
    # The reactive programs' event path, a location of its own (engage_assets.reactive_location), as locally.
    assert events == {
        "grpc_server": {
            "host": {"env": "DAGSTER_EVENTS_CODE_SERVER_HOST"},
            "port": {"env": "DAGSTER_EVENTS_CODE_SERVER_PORT"},
            "location_name": "engage_events",
        }
    }
    local = _yaml(ROOT / "workspace.yaml")["load_from"]
    assert [x["python_module"]["location_name"] for x in local] == ["engage", "engage_events"]
    tool = (ROOT / "pyproject.toml").read_text()
    assert 'code_location_name = "engage"' in tool  # the same name as the local workspace's


def _instructions() -> list[Any]:
    """deploy/Dockerfile's instructions, as BuildKit's parser reads them (the `dockerfile` package: a test
    dependency where it has a wheel, Linux x86-64)."""
    dockerfile = pytest.importorskip(
        "dockerfile", reason="the `dockerfile` package (BuildKit's parser) is not installed"
    )
    return list(dockerfile.parse_file(str(DEPLOY / "Dockerfile")))


KNOWN = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "ARG", "LABEL"}


def test_the_dockerfile_parses_and_builds_what_the_guide_says():
    commands = _instructions()
    assert {c.cmd for c in commands} <= KNOWN, {c.cmd for c in commands} - KNOWN
    assert commands[0].cmd == "FROM" and commands[0].value == ("python:3.11-slim",)
    runs = " ".join(v for c in commands if c.cmd == "RUN" for v in c.value)
    # The dependencies with the pinned constraints, then the project itself.
    assert "pip install -c constraints.txt -r" in runs
    assert "pip install -c constraints.txt --no-deps -e ." in runs
    # The production instance config at DAGSTER_HOME.
    env = dict(zip(*[iter(v for c in commands if c.cmd == "ENV" for v in c.value)] * 2, strict=True))
    assert env["DAGSTER_HOME"] and 'cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"' in runs
    assert env["ENGAGE_ENV"] == "prod"
    assert env["DAGSTER_CODE_SERVER_PORT"] == "4000" and env["DAGSTER_EVENTS_CODE_SERVER_PORT"] == "4001"


def test_the_image_runs_as_a_user_it_creates_not_root():
    commands = _instructions()
    users = [c.value[0] for c in commands if c.cmd == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    runs = " ".join(v for c in commands if c.cmd == "RUN" for v in c.value)
    assert f"useradd --system --uid 10001 --gid {users[-1]}" in runs and f" {users[-1]}" in runs
    # Every instruction after the last USER runs as that user: nothing installs or writes there.
    after = commands[[i for i, c in enumerate(commands) if c.cmd == "USER"][-1] + 1 :]
    assert {c.cmd for c in after} <= {"EXPOSE", "ENTRYPOINT", "CMD", "LABEL"}


def test_every_copy_source_exists_and_the_context_keeps_what_the_image_needs():
    copies = [c for c in _instructions() if c.cmd == "COPY"]
    sources = [s for c in copies for s in c.value[:-1]]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
    ignored = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in sources:
        assert source.rstrip("/") not in ignored, source


def test_the_entrypoint_is_in_the_image_and_the_default_role_is_the_code_server():
    commands = _instructions()
    [entrypoint] = [c for c in commands if c.cmd == "ENTRYPOINT"]
    [cmd] = [c for c in commands if c.cmd == "CMD"]
    assert entrypoint.json and cmd.json  # exec form: signals reach tini, and tini's child
    assert entrypoint.value == ("tini", "--", "/opt/engage/deploy/entrypoint.sh")
    assert "apt-get install -y --no-install-recommends tini" in " ".join(c.value[0] for c in commands if c.cmd == "RUN")
    [workdir] = [c.value[0] for c in commands if c.cmd == "WORKDIR"]
    assert Path(workdir, "deploy/entrypoint.sh") == Path(entrypoint.value[2])
    assert any(c.value == ("deploy/", "deploy/") for c in commands if c.cmd == "COPY")
    assert cmd.value == ("code-server",)
    assert os.access(DEPLOY / "entrypoint.sh", os.X_OK)


def test_the_entrypoint_script_parses():
    subprocess.run(["bash", "-n", str(DEPLOY / "entrypoint.sh")], check=True)


def _role_command(role: str, *extra: str) -> list[str]:
    out = subprocess.run(
        ["bash", str(DEPLOY / "entrypoint.sh"), role, *extra],
        env={**os.environ, "ENGAGE_ENTRYPOINT_DRY_RUN": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def _console_script(name: str) -> click.Command:
    """The click command behind an installed console script (its module's `cli`; the script's `main` wraps it)."""
    [script] = [e for e in entry_points(group="console_scripts") if e.name == name]
    return importlib.import_module(script.module).cli


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_an_installed_command_that_accepts_its_options(role):
    command = _role_command(role)
    cli = _console_script(command[0])
    # click parses every option the script passes (an unknown one fails here), then `--help` stops it.
    result = CliRunner().invoke(cli, [*command[1:], "--help"], catch_exceptions=False)
    assert result.exit_code == 0, (shlex.join(command), result.output)
    if "--module-name" in command:
        module = command[command.index("--module-name") + 1]
        assert importlib.util.find_spec(module) is not None, module
        assert command[command.index("--location-name") + 1] == LOCATIONS[module]
    if "--workspace" in command:
        assert Path(command[command.index("--workspace") + 1]) == DEPLOY / "workspace.yaml"


def test_any_other_command_runs_as_given():
    """The ECS run launcher's run tasks start `dagster api execute_run …`, with or without the image's entrypoint."""
    assert _role_command("dagster", "api", "execute_run", "{}") == ["dagster", "api", "execute_run", "{}"]
    no_role = subprocess.run(["bash", str(DEPLOY / "entrypoint.sh")], capture_output=True, text=True)
    assert no_role.returncode == 2 and "usage" in no_role.stderr


def test_the_guide_names_every_variable_the_processes_need():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    needed = [
        *PROD_REQUIRED.values(),
        *POSTGRES_VARS,
        "ENGAGE_ENV",
        "DAGSTER_CODE_SERVER_HOST",
        "DAGSTER_EVENTS_CODE_SERVER_HOST",
        "DAGSTER_CURRENT_IMAGE",
    ]
    needed += [
        f"SNOWFLAKE_{part}" for part in ("ACCOUNT", "USER", "PASSWORD", "ROLE", "WAREHOUSE", "DATABASE", "SCHEMA")
    ]
    missing = [name for name in needed if name not in guide]
    assert not missing, f"docs/deploy.md does not name {missing}"
    for step in ("docker build -f deploy/Dockerfile", "dagster instance migrate", "EcsRunLauncher"):
        assert step in guide, step
