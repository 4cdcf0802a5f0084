"""The README's "Your own data" recipe, followed as written on a small hand-made warehouse (#12, item 5).

1. the raw tables in a DuckDB file of one's own (`tests/handmade_warehouse.py`);
2. `ENGAGE_WAREHOUSE_PATH` names it (here relative to the working directory, as a user types it);
3. `engage run --program proactive-refunds --partition 2026-11-21`.

Then: dbt built the marts in that file, the candidates are the hand-made customers' orders, nothing was generated
over or beside it; a dbt test that fails on a mart stops `engage run` naming the test, and a `dagster asset
materialize` of the program's source afterwards refuses to run, naming it too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from engage_assets.cli import main
from tests.handmade_warehouse import CUSTOMERS, DAY, customer, insert, write_warehouse

pytestmark = pytest.mark.slow
PARTITION = DAY.isoformat()
RUN = ["run", "--program", "proactive-refunds", "--partition", PARTITION]
BROKEN_TEST = "accepted_values_customers_account_status"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(work: Path) -> dict[str, str]:
    """The recipe's environment: the warehouse named relative to the working directory, as a user types it (dbt
    runs in dbt_project/ and must open this same file)."""
    return {
        "ENGAGE_HOME": str(work / "state"),
        "ENGAGE_WAREHOUSE_PATH": "shop/warehouse.duckdb",
        "DAGSTER_HOME": str(work / "dagster"),
        "DBT_TARGET_PATH": str(work / "dbt_target"),
        "ENGAGE_ENV": "local",
        "ENGAGE_SMTP_PORT": str(_free_port()),
    }


def _engage_run(work: Path, name: str) -> tuple[int, str, dict[str, str]]:
    """`engage run` (RUN) in `work` with the recipe's environment: (exit code, its output, the environment)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.delenv("ENGAGE_PROGRAM_CONFIGS", raising=False)
        for k, v in _environment(work).items():
            mp.setenv(k, v)
        out = work / f"{name}.out"
        with open(out, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                main(RUN)
                code = 0
            except SystemExit as exit_:
                code = int(exit_.code or 0)
        return code, out.read_text(), dict(os.environ)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """The recipe's steps in a fresh folder: (folder, `engage run`'s exit code, its output)."""
    work = tmp_path_factory.mktemp("own")
    write_warehouse(work / "shop" / "warehouse.duckdb")
    (work / "dagster").mkdir()
    code, output, _ = _engage_run(work, "run")
    return work, code, output


def test_the_recipe_runs_the_program_on_the_users_own_warehouse(recipe):
    work, code, output = recipe
    assert code == 0, output
    # dbt built the marts into the user's file (the relative path, resolved once for every part).
    with duckdb.connect(str(work / "shop" / "warehouse.duckdb"), read_only=True) as con:
        orders = {r[0] for r in con.execute("SELECT order_id FROM marts.order_tracking").fetchall()}
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert orders == {f"O_{c}" for c in CUSTOMERS}
    # Nothing generated: no demo tables in the user's file, no demo warehouse beside it or in ENGAGE_HOME.
    assert "engage_demo_generator" not in tables and "churned_customers" not in tables
    assert not (work / "state" / "warehouse.duckdb").exists()
    assert sorted(p.name for p in (work / "shop").iterdir()) == ["warehouse.duckdb"]
    # The candidates are the hand-made orders: every one eligible, a tenth or so held out.
    export = pq.read_table(
        work / "state" / "exports" / "proactive_refunds" / f"partition_key={PARTITION}" / "candidates.parquet"
    )
    assert set(export.column("order_id").to_pylist()) == orders
    assert f"== Proactive Refund Offers  (partition {PARTITION}" in output
    # Only that program ran: no other program's stages, and its touches are in the ledger.
    assert sorted(p.name for p in (work / "state" / "stages").iterdir() if p.is_dir()) == ["proactive_refunds"]
    ledger = sqlite3.connect(work / "state" / "delivery.sqlite")
    planned = {r[0] for r in ledger.execute("SELECT DISTINCT customer_id FROM touches").fetchall()}
    assert planned == set(CUSTOMERS)


def test_a_failing_dbt_test_blocks_the_program_in_every_path(recipe):
    work, code, _ = recipe
    assert code == 0
    with duckdb.connect(str(work / "shop" / "warehouse.duckdb")) as con:
        insert(con, "customers", [customer("C99", "US", account_status="banned")])
    broken, output, env = _engage_run(work, "broken")
    assert broken == 1, output
    assert BROKEN_TEST in output and "no program ran" in output
    # A materialization of the program's source alone (no dbt in the run) refuses too, naming the test.
    materialize = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "engage_assets.definitions",
            "--select",
            'key:"proactive_refunds/source_candidates"',
            "--partition",
            PARTITION,
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = materialize.stdout + materialize.stderr
    assert materialize.returncode != 0, text
    assert BROKEN_TEST in text and "proactive-refunds: not run" in text
