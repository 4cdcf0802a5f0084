"""The production instance on a real PostgreSQL server: the deployment's processes, started through the image's
entrypoint (`deploy/entrypoint.sh`) with the production `deploy/dagster.yaml` and `deploy/workspace.yaml`.

The test starts a throwaway PostgreSQL cluster (initdb + pg_ctl, password authentication over TCP on a free port;
as root, the cluster runs as the `postgres` user), then:

1. `entrypoint.sh migrate` (`dagster instance migrate`) creates the instance's tables in it;
2. `entrypoint.sh code-server` serves the `engage` code location over gRPC (`entrypoint.sh events-code-server` the
   event path's, `engage_events`), `entrypoint.sh webserver` loads both through the production workspace, and a run of the project's `gdpr_erasure` job is submitted through the
   webserver's GraphQL API: the queued run coordinator leaves it QUEUED in PostgreSQL;
3. `entrypoint.sh daemon` dequeues it (the run queue's limits and the pools are the production file's), launches it,
   and the run succeeds, its events and the daemon's heartbeats in PostgreSQL.

What differs from production, and why: the rendered dagster.yaml drops the ECS run launcher (there is no ECS here:
Dagster's default launcher starts the run as a process of the code server instead of an ECS task) and the S3 compute
log manager (no bucket); every other line is the production file's, the storage settings read from the same
DAGSTER_PG_* variables.  The code runs with ENGAGE_ENV=local (the run's resources are the embedded ones on an empty
ENGAGE_HOME), since the production backends need AWS.

PostgreSQL is not installed by the test: without its server binaries (Debian: `apt-get install postgresql`) the
test is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from engage_assets.assets.dbt import WAREHOUSE_POOL

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NOT_IN_THE_TEST = ("run_launcher", "compute_logs")  # ECS and S3: see the module docstring
JOB = "gdpr_erasure"

pytestmark = pytest.mark.slow  # a minute: a server, three Dagster processes and a run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bindir() -> Path | None:
    """The server binaries: Debian's /usr/lib/postgresql/<version>/bin (the newest), else initdb on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )
    for bindir in reversed(candidates):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _as_server_user() -> tuple[list[str], int | None]:
    """The command prefix that runs initdb/pg_ctl as a non-root user (initdb refuses root), and that user's uid."""
    if os.geteuid() != 0:
        return [], None
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        pytest.skip("initdb refuses to run as root and there is no `postgres` user to run it as")
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("initdb refuses to run as root and `runuser` is missing to run it as the `postgres` user")
    return [runuser, "-u", "postgres", "--"], uid


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL server on 127.0.0.1: the DAGSTER_PG_* settings that reach it."""
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or on PATH: "
            "install Debian's `postgresql` package to run the production instance against a real server"
        )
    as_user, uid = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="engage-pg-"))  # not pytest's tmp_path: root's, which postgres cannot enter
    root.chmod(0o700)
    data, password = root / "data", secrets.token_urlsafe(16)
    (root / "pwfile").write_text(password + "\n")
    if uid is not None:
        os.chown(root, uid, -1)
        os.chown(root / "pwfile", uid, -1)
    port = _free_port()

    def pg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120, cwd=root)

    init = pg(str(bindir / "initdb"), "-D", str(data), "-U", "dagster", "-E", "UTF8", "--no-sync",
              "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={root / 'pwfile'}")  # fmt: skip
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{init.stdout}{init.stderr}")
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c full_page_writes=off"
    start = pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
               "-o", options, "start")  # fmt: skip
    if start.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed:\n{start.stdout}{start.stderr}{log}")
    try:
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(host="127.0.0.1", port=port, user="dagster", password=password, dbname="postgres")
        ) as conn:
            conn.autocommit = True
            conn.cursor().execute("CREATE DATABASE engage_dagster")
        yield {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(port),
            "DAGSTER_PG_DB": "engage_dagster",
            "DAGSTER_PG_USERNAME": "dagster",
            "DAGSTER_PG_PASSWORD": password,
        }
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _render_instance(home: Path) -> None:
    """The production dagster.yaml less the ECS launcher and the S3 compute logs (module docstring)."""
    prod = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    rendered = {k: v for k, v in prod.items() if k not in NOT_IN_THE_TEST}
    assert set(prod) - set(rendered) == set(NOT_IN_THE_TEST)
    assert "postgres" in rendered["storage"]
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(rendered))


def _environment(tmp_path: Path, pg_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGAGE_", "DAGSTER_"))}
    return {
        **env,
        **pg_env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "ENGAGE_ENV": "local",
        "ENGAGE_HOME": str(tmp_path / "engage"),
        "DAGSTER_CODE_SERVER_BIND": "127.0.0.1",
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(_free_port()),
        "DAGSTER_EVENTS_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_EVENTS_CODE_SERVER_PORT": str(_free_port()),
        "DAGSTER_WEBSERVER_BIND": "127.0.0.1",
        "DAGSTER_WEBSERVER_PORT": str(_free_port()),
    }


class Processes:
    """The deployment's long-running processes, each in its own session (so stopping one stops its children)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, role: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{role}.log").open("wb")
        proc = subprocess.Popen(
            ["bash", str(DEPLOY / "entrypoint.sh"), role],
            env=self.env,
            cwd=self.logs,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append((role, proc))
        return proc

    def log(self, role: str) -> str:
        return (self.logs / f"{role}.log").read_text(errors="replace")[-6000:]

    def stop_all(self) -> None:
        for _, proc in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self.started):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _wait_for(what: str, ready: Callable[[], bool], procs: Processes, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [(role, p.returncode) for role, p in procs.started if p.poll() is not None]
        if dead:
            role = dead[0][0]
            pytest.fail(f"{role} exited ({dead[0][1]}) while waiting for {what}:\n{procs.log(role)}")
        if ready():
            return
        time.sleep(1)
    logs = "\n".join(f"--- {role}\n{procs.log(role)}" for role, _ in procs.started)
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def _location_loaded(web_port: str) -> bool:
    """The webserver answers and has loaded both locations, `engage` and `engage_events`, from their code servers."""
    from dagster_graphql import DagsterGraphQLClient

    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=int(web_port), timeout=10)
        result = client._execute(  # the client has no public query for this
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename } } } } }"
        )
    except Exception:
        return False
    entries = result["workspaceOrError"].get("locationEntries", [])
    loaded = {
        e["name"]
        for e in entries
        if e["loadStatus"] == "LOADED" and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    }
    return loaded >= {"engage", "engage_events"}


def _server_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


# long: one deployment's story, start to finish; the helpers above hold the mechanics
@pytest.mark.timeout(900)
def test_webserver_daemon_and_a_run_on_postgres(postgres, tmp_path, monkeypatch):
    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.events import DagsterEventType
    from dagster_graphql import DagsterGraphQLClient

    env = _environment(tmp_path, postgres)
    _render_instance(Path(env["DAGSTER_HOME"]))
    for key in ("DAGSTER_HOME", *postgres):
        monkeypatch.setenv(key, env[key])

    # 1. Migrations: the instance's tables, in PostgreSQL.
    migrate = subprocess.run(
        ["bash", str(DEPLOY / "entrypoint.sh"), "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    import psycopg2

    with contextlib.closing(
        psycopg2.connect(
            host="127.0.0.1",
            port=int(postgres["DAGSTER_PG_PORT"]),
            user="dagster",
            password=postgres["DAGSTER_PG_PASSWORD"],
            dbname="engage_dagster",
        )
    ) as conn:
        cur = conn.cursor()
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        tables = {row[0] for row in cur.fetchall()}
    assert {"runs", "event_logs", "alembic_version", "instigators", "daemon_heartbeats"} <= tables, tables

    procs = Processes(env, tmp_path)
    try:
        # 2. The code server, the webserver on the production workspace, a run submitted through GraphQL.
        procs.start("code-server")
        procs.start("events-code-server")
        procs.start("webserver")
        web = env["DAGSTER_WEBSERVER_PORT"]
        _wait_for("the webserver", lambda: _server_up(f"http://127.0.0.1:{web}/server_info"), procs)
        _wait_for("the engage and engage_events code locations", lambda: _location_loaded(web), procs)
        client = DagsterGraphQLClient("127.0.0.1", port_number=int(web), timeout=60)
        run_id = client.submit_job_execution(JOB, repository_location_name="engage")

        with DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
            assert instance.get_run_by_id(run_id).status == DagsterRunStatus.QUEUED  # no daemon yet

            # 3. The daemon: dequeues the run and launches it; the run succeeds.
            procs.start("daemon")

            def finished() -> bool:
                run = instance.get_run_by_id(run_id)
                return run is not None and run.is_finished

            _wait_for(f"the {JOB} run to finish", finished, procs, timeout=400)
            run = instance.get_run_by_id(run_id)
            events = [e.dagster_event.event_type for e in instance.all_logs(run_id) if e.dagster_event]
            assert run.status == DagsterRunStatus.SUCCESS, (run.status, events, procs.log("daemon"))
            # Queued by the webserver, started by the daemon's launch (the daemon emits no separate dequeue event).
            assert events.index(DagsterEventType.RUN_ENQUEUED) < events.index(DagsterEventType.RUN_STARTING)
            assert DagsterEventType.STEP_SUCCESS in events
            # The step is in the warehouse pool: its slot (the production file's default limit, 1) lives in
            # PostgreSQL too.
            pool = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
            assert (pool.slot_count, pool.limit, pool.using_default_limit, pool.claimed_slots) == (1, 1, True, [])
            heartbeats = instance.get_daemon_heartbeats()
            assert "QUEUED_RUN_COORDINATOR" in heartbeats, sorted(heartbeats)
    finally:
        procs.stop_all()
