"""`engage` command line: generate the embedded warehouse and run every batch program end to end.

    engage run [--scale 1.0] [--regenerate]   warehouse → dbt build → models → each program's latest partition
    engage run --program P --partition D      one program's partition D (on your own warehouse too)
    engage generate --scale 0.1               (re)write the raw tables only
    engage events put [FILE] | stats          PutEvents entries into the event queue; its counts
    engage simulate carts --rate R --duration D   simulated cart events (demo/load) through the ingest path
    engage api-key create|list|revoke         the serving API's keys (the first admin key in production)
    engage validate [FILE…]                   check program configs, messages and filter expressions (exit 1)
    engage new-program NAME [--reactive]      a commented starting config that passes validate
    engage config-docs [--check]              regenerate docs/config-reference.md and program_configs/schema.json
    engage model list | rollback MODEL [--to V]   the trained models; make an earlier promoted version current

Runs go through the Dagster instance at DAGSTER_HOME, so `make dev` shows them, with their metadata, in the UI.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from engage_assets.cli.api_keys import add_commands as add_api_key_commands
from engage_assets.cli.config_tools import add_commands as add_config_commands
from engage_assets.cli.delivery import deliver_all
from engage_assets.cli.events import add_commands as add_events_commands
from engage_assets.cli.metrics_table import print_program_metrics
from engage_assets.cli.models import add_commands as add_model_commands
from engage_assets.cli.reports import run_reports
from engage_assets.cli.run_scope import (
    RunScope,
    RunScopeError,
    dbt_models_read_by,
    generate_demo_warehouse,
    program_asset_keys,
    run_scope,
    should_generate,
)
from engage_assets.cli.simulate import add_commands as add_simulate_commands
from engage_assets.cli.simulate import print_simulated_responses
from engage_assets.domain.config import ConfigError, load_programs
from engage_assets.settings import Settings, get_settings, program_config_dir
from resources.delivery_ledger.sqlite import DeliveryLedger

# The heavier parts (the Dagster definitions, the production resources, the serving app, the generator) are imported
# by the commands that use them, so `engage generate` and `engage create-tables` start without loading them all.


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """{asset key: its materialization's metadata values} of a run."""
    out: dict[str, dict[str, Any]] = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization  # type: ignore[union-attr]
            out[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return out


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""The runs' events go to the Dagster instance (the UI shows them); the terminal gets warnings and the summary."""


def execute(
    job: dg.JobDefinition, instance: dg.DagsterInstance, log_path: Any = None, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    """Run a job in process, quietly: tool output (dbt's log stream) goes to `log_path` when given."""

    if log_path is None:
        return job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET, **kwargs)
    with open(log_path, "w") as log, contextlib.redirect_stdout(log):
        return job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET, **kwargs)


def latest_partition(job: dg.JobDefinition) -> str:
    """The job's last complete partition."""
    parts = job.partitions_def
    assert parts is not None
    key = parts.get_last_partition_key()
    assert key is not None, "no complete partition yet"
    return key


def _print_program(name: str, partition: str, meta: dict[str, dict[str, Any]], group: str, seconds: float) -> None:
    """One program run's funnel, scores, segments, offers, store and export, from its assets' metadata."""

    def m(stage: str) -> dict[str, Any]:
        return meta.get(f"{group}/{stage}", {})

    src, elig, scored, offers = m("source_candidates"), m("eligible_candidates"), m("scored_candidates"), m("offers")
    stored, export = m("stored_candidates"), m("warehouse_export")
    print(f"\n== {name}  (partition {partition}, {seconds:.1f} s)")
    print(
        f"   source rows            {src.get('rows_read', 0):>10,}   rejected as invalid: {src.get('rejected_invalid', 0):,}"
    )
    n = src.get("dagster/row_count", 0)
    print(f"   valid source rows      {n:>10,}")
    for key, removed in elig.items():
        if key.startswith("removed/"):
            n -= removed
            print(f"   after {key[8:]:<17}{n:>10,}   (-{removed:,})")
    print(
        f"   scored                 {scored.get('dagster/row_count', 0):>10,}   "
        + "  ".join(f"{k[14:]}={v}" for k, v in scored.items() if k.startswith("model_version/"))
    )
    for key, removed in offers.items():
        if key.startswith("removed/") and removed:
            print(f"   dropped at offers: {key[8:]:<12}{removed:>7,}")
    print("   score distribution by segment:")
    for seg, d in (offers.get("segments") or {}).items():
        print(
            f"     {seg:<12} {d['count']:>8,}  mean {d['mean']:.3f}  p10 {d['p10']:.3f}  p90 {d['p90']:.3f}"
            f"  holdout {d['holdout']:,}"
        )
    print(
        "   offers by type:        " + ", ".join(f"{k[7:]}={v:,}" for k, v in offers.items() if k.startswith("offers/"))
    )
    print(f"   holdout (control)      {offers.get('holdout', 0):>10,}")
    print(
        f"   offer cost             ${offers.get('offer_cost_usd', 0):>12,.2f} of ${offers.get('budget_usd', 0):,.0f}"
    )
    print(
        f"   stored candidates      {stored.get('stored_in_partition', 0):>10,}   (expire {stored.get('expires_at', '?')})"
    )
    print(f"   export                 {export.get('path', '?')}")
    print(f"   warehouse table        {export.get('table', '?')}")


def _build_warehouse(
    defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, job_name: str, scope: RunScope
) -> bool:
    """dbt build through Dagster, its log to a file; whether it succeeded.  With `--program`, only the models the
    programs read (their marts and training tables, and what those are built from)."""
    print("\nBuilding the warehouse with dbt (staging → intermediate → marts, tests as asset checks) ...")
    t0 = time.perf_counter()
    dbt_log = settings.home / "dbt_build.log"
    job = defs.resolve_job_def(job_name)
    subset = dbt_models_read_by(defs, job, scope) if scope.selected else None
    res = execute(job, instance, log_path=dbt_log, asset_selection=subset)
    checks = [e.event_specific_data for e in res.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    passed = len([c for c in checks if c.passed])  # type: ignore[union-attr]
    if not res.success:
        failed = [
            f"{c.asset_key.to_user_string()}: {c.check_name}"  # type: ignore[union-attr]
            for c in checks
            if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR  # type: ignore[union-attr]
        ]
        print("dbt build failed" + (f"; failed dbt tests: {'; '.join(failed)}" if failed else ""), file=sys.stderr)
        print(f"   see {dbt_log} and the run in the Dagster UI (make dev); no program ran.", file=sys.stderr)
        return False
    print(
        f"   {len(_materializations(res))} dbt models built, {passed}/{len(checks)} dbt tests passed "
        f"(asset checks) in {time.perf_counter() - t0:.1f} s; dbt's log: {dbt_log}"
    )
    return True


def _train_models(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, scope: RunScope) -> bool:
    """The retraining job (with `--program`: the programs' models); prints each model's version, holdout AUC and
    promotion; whether it succeeded."""
    print("\nTraining models (promoted only if better than the current version) ...")
    t0 = time.perf_counter()
    job = defs.resolve_job_def(job_name)
    wanted = set(program_asset_keys(defs, scope)) if scope.selected else None
    subset = [k for k in job.asset_layer.selected_asset_keys if k in wanted] if wanted is not None else None
    if subset == []:
        return True
    res = execute(job, instance, asset_selection=subset)
    if not res.success:
        print("model training failed", file=sys.stderr)
        return False
    for key, meta in sorted(_materializations(res).items()):
        print(
            f"   {key:<48} v{meta.get('version')}  AUC {meta.get('holdout/roc_auc', float('nan')):.3f}"
            f"  promoted={meta.get('promoted')}"
        )
    print(f"   trained in {time.perf_counter() - t0:.1f} s")
    return True


def _run_programs(defs: dg.Definitions, instance: dg.DagsterInstance, scope: RunScope) -> bool:
    """Each batch program's job for its partition (default: its latest); whether every run succeeded."""
    failed = False
    # A reactive program (abandoned cart) has no batch job: its sensor decides events as they come.
    for program in scope.batch:
        job = defs.resolve_job_def(f"{program.group}_batch")
        key = scope.partitions.get(program.programId) or latest_partition(job)
        t0 = time.perf_counter()
        res = execute(job, instance, partition_key=key)
        if not res.success:
            failed = True
            print(f"\n== {program.programName}: run FAILED for partition {key}", file=sys.stderr)
            for event in res.all_events:
                if event.is_failure:
                    print(f"   {event.message}", file=sys.stderr)
            continue
        _print_program(program.programName, key, _materializations(res), program.group, time.perf_counter() - t0)
    return not failed


def cmd_run(args: argparse.Namespace) -> int:
    """`engage run`: warehouse → dbt build → models → each program's batch → a cart burst through the reactive
    programs' sensor and decision runs → a day of deliveries.  `--program` (repeatable) runs only those programs
    (and builds and trains only what they read); `--partition` must be a partition of each."""
    settings = get_settings()
    try:
        scope = run_scope(load_programs(program_config_dir()), args.program or [], args.partition)
        generate_now = should_generate(settings, args.regenerate)
    except (RunScopeError, ConfigError) as e:  # before anything runs: a bad flag, setting or program config
        print(f"engage run: {e}", file=sys.stderr)
        return 2
    settings.home.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    if generate_now:
        generate_demo_warehouse(settings, args.scale, args.seed)
    else:
        print(f"Warehouse: {settings.warehouse_path}")
    from engage_assets.definitions import RETRAIN_JOB, WAREHOUSE_JOB, build_definitions

    defs = build_definitions()
    instance = dg.DagsterInstance.get() if settings.dagster_home else dg.DagsterInstance.ephemeral()
    if not _build_warehouse(defs, instance, settings, WAREHOUSE_JOB, scope):
        return 1
    if not _train_models(defs, instance, RETRAIN_JOB, scope):
        return 1
    succeeded = _run_programs(defs, instance, scope)
    if succeeded and scope.reactive:
        from engage_assets.cli.carts import run_cart_burst

        succeeded = run_cart_burst(defs, instance, settings, scope.reactive)
    if succeeded:
        _deliver(defs, instance, settings, send_stale=args.send_stale, scope=scope)
        if settings.env == "local":  # the customer-response SIMULATOR: outcomes and conversions for the metrics
            print_simulated_responses(args.seed)
        succeeded = run_reports(defs, instance, settings, WAREHOUSE_JOB, execute) and succeeded
        print_program_metrics(defs, [*scope.batch, *scope.reactive])  # in the spec's terms, beside its figures
    _print_serving_example(settings)
    print(f"\nAll done in {time.perf_counter() - t_all:.1f} s.  State: {settings.home}")
    print("Open the Dagster UI with `make dev` (http://127.0.0.1:3000) to see lineage, runs and metadata.")
    return 0 if succeeded else 1


def _deliver(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    hours: int = 24,
    step: int = 3,
    send_stale: bool = False,
    scope: RunScope | None = None,
) -> None:
    """The due-touch sensors' work over the next day, run now: deliveries with a send clock every `step` hours
    (touches go out at 10:00 in each customer's zone, quiet hours defer, delays such as +3 days wait; touches
    planned longer ago than their program's `delivery.staleAfterHours` are recorded `stale` unless `send_stale`)."""
    print(
        f"\nDelivering: the due-touch sensors' next {hours} hours, a send clock every {step} h (e-mail to the "
        "local SMTP capture, SMS/push to the outbox, call tasks and in-app inbox in the engagement store) ..."
    )
    t0 = time.perf_counter()
    groups = scope.groups if scope is not None and scope.selected else None  # `--program`: only their deliveries
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for k in range(1, hours // step + 1):
        clock = start + timedelta(hours=step * k)
        deliver_all(defs, instance, clock, log_level="WARNING", send_stale=send_stale, groups=groups)
    ledger = DeliveryLedger(settings.ledger_path)
    for program in load_programs(program_config_dir()):
        if groups is not None and program.group not in groups:
            continue
        _print_ledger_counts(program.programName, ledger.counts(program.programId))
    ledger.close()
    print(f"   captured e-mails (readable .eml files): {settings.home / 'mail'}")
    print(f"   SMS and push outbox: {settings.home / 'outbox'};  delivered in {time.perf_counter() - t0:.1f} s")


def _print_ledger_counts(name: str, counts: dict[tuple[str, str, str, str | None], int]) -> None:
    """One program's touches by channel and state, and the suppressed/failed ones by reason (most first)."""
    by_channel: dict[str, dict[str, int]] = {}
    by_reason: dict[str, int] = {}
    for (_, channel, state, reason), n in counts.items():
        by_channel.setdefault(channel, {})[state] = by_channel.get(channel, {}).get(state, 0) + n
        if state in ("suppressed", "failed") and reason:
            by_reason[f"{channel}:{reason}"] = by_reason.get(f"{channel}:{reason}", 0) + n
    print(f"   {name}:")
    for channel, states in sorted(by_channel.items()):
        print(f"     {channel:<8} " + "  ".join(f"{s}={n:,}" for s, n in sorted(states.items())))
    if by_reason:
        print(
            "     suppressed/failed by reason: "
            + ", ".join(f"{r}={n:,}" for r, n in sorted(by_reason.items(), key=lambda kv: -kv[1]))
        )


def _print_serving_example(settings: Settings) -> None:
    """The serving API over the candidates just stored: a local demo key and a request to paste."""
    from engage_assets.serving import ensure_demo_key

    key = ensure_demo_key(settings)
    print("\nServing API (start it with `make serve`; the demo key is local, in ENGAGE_HOME/demo_api_key):")
    print(
        f"   curl -s -H 'X-API-Key: {key}' \\\n"
        "     'http://127.0.0.1:8000/v1/programs/churn-prevention/candidates/by-risk-level?riskLevel=critical"
        "&minScore=0.8&limit=5'"
    )
    print(
        f"   curl -s -H 'X-API-Key: {key}' \\\n"
        "     'http://127.0.0.1:8000/v1/programs/win-back-campaigns/candidates/by-score?minScore=0.7"
        "&offerType=premium&limit=5'"
    )


def cmd_generate(args: argparse.Namespace) -> int:
    """`engage generate`: (re)write the raw tables only."""
    from engage_assets.demo.datagen import generate

    settings = get_settings()
    path = args.warehouse or settings.warehouse_path
    counts = generate(path, scale=args.scale, seed=args.seed)
    for name, n in counts.items():
        print(f"raw.{name:<22}{n:>12,}")
    return 0


def cmd_create_tables(args: argparse.Namespace) -> int:
    """ENGAGE_ENV=prod: create the DynamoDB tables the production resources name (candidate store and score cache,
    engagement store, delivery ledger, refund ledger, the reactive table, the outcome store) with their indexes;
    existing tables are left as they are but for the indexes they lack."""
    from resources.by_env import build_resources

    settings = get_settings()
    if settings.env == "local":
        print("create-tables is for ENGAGE_ENV=prod (the local stores are SQLite files, created on first use)")
        return 2
    resources = build_resources(settings)
    wanted = {
        "store": "create_tables",
        "engagement": "create_table",
        "delivery_ledger": "create_table",
        "refund_ledger": "create_table",
        # The reactive programs' table: dedup claims (with their TTL attribute) and cart state share it.
        "dedup": "create_table",
        "outcomes": "create_table",  # what the providers reported (the webhooks; the daily export reads it)
    }
    with dg.build_resources({k: resources[k] for k in wanted}) as built:  # dg.EnvVar values resolved here
        for name, method in wanted.items():
            target = getattr(built, name)  # the DynamoDB resources create their own tables
            getattr(target, method)()
            tables = [getattr(target, a) for a in ("table_name", "score_cache_table_name") if hasattr(target, a)]
            print(f"{name:<16} {', '.join(tables)}: ready")
    return 0


def main(argv: list[str] | None = None) -> None:
    """The `engage` entry point: parse the command line, run the command, exit with its status."""
    parser = argparse.ArgumentParser(prog="engage", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="warehouse → dbt → models → every batch program's latest partition")
    run.add_argument("--scale", type=float, default=1.0, help="generator volume, 1.0 = the spec's")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--regenerate", action="store_true", help="rewrite the raw tables even if they exist")
    run.add_argument(
        "--program",
        action="append",
        metavar="P",
        help="run only this program (programId or group; repeatable): its marts, models, batch and deliveries",
    )
    run.add_argument(
        "--partition",
        default=None,
        help="partition key (YYYY-MM-DD) instead of each program's latest; it must be "
        "a partition of every program run (a monthly program's first Monday, …)",
    )
    run.add_argument(
        "--send-stale",
        action="store_true",
        help="deliver touches planned longer ago than their program's delivery.staleAfterHours too (default: "
        "recorded `stale`, not sent — e.g. a monthly program's latest partition weeks after it ended)",
    )
    run.set_defaults(fn=cmd_run)
    gen = sub.add_parser("generate", help="(re)write the raw tables of the embedded warehouse")
    gen.add_argument("--scale", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--warehouse", default=None)
    gen.set_defaults(fn=cmd_generate)
    tables = sub.add_parser("create-tables", help="ENGAGE_ENV=prod: create the DynamoDB tables (idempotent)")
    tables.set_defaults(fn=cmd_create_tables)
    add_events_commands(sub)
    add_simulate_commands(sub)
    add_api_key_commands(sub)
    add_config_commands(sub)
    add_model_commands(sub)
    args = parser.parse_args(argv)
    sys.exit(args.fn(args))


if __name__ == "__main__":
    main()
