"""One run per program partition at a time, and a GDPR rewrite of exports that never races an export being written:
the limits exist in the definitions and in the dagster.yaml `make setup` copies to DAGSTER_HOME.

- The run queue: a program's batch runs carry `engage/batch: <programId>`, limited to one run per value.
- Pools (limit 1, `default_limit`): every batch stage is in the warehouse pool or its program's `<group>_batch`
  pool, whatever launched the run (an asset backfill from the UI carries no job tags); the GDPR erasure op is in
  the warehouse pool with the exports.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from engage_assets.assets.dbt import WAREHOUSE_POOL
from engage_assets.assets.gdpr import GDPR_JOB
from engage_assets.assets.program import BATCH_RUN_TAG, STAGES
from tests import test_definitions_snapshot

definitions = test_definitions_snapshot.definitions  # the Definitions fixture (module scope)

ROOT = Path(__file__).resolve().parent.parent
BATCH_STAGES = (*STAGES, "touch_plan")


def _batch_programs(defs: dg.Definitions) -> dict[str, str]:
    """{group: programId} of every batch program, from its batch job's tags."""
    repo = defs.get_repository_def()
    return {
        job.name.removesuffix("_batch"): job.tags["engage/program"]
        for job in repo.get_all_jobs()
        if job.name.endswith("_batch") and not job.name.startswith("__")
    }


def test_every_batch_stage_is_in_a_limited_pool(definitions):
    graph = definitions.get_repository_def().asset_graph
    programs = _batch_programs(definitions)
    assert {"proactive_refunds", "churn_prevention", "win_back"} <= set(programs)
    for group in programs:
        for stage in BATCH_STAGES:
            pools = set(graph.get(dg.AssetKey([group, stage])).pools or [])
            assert pools in ({WAREHOUSE_POOL}, {f"{group}_batch"}), (group, stage, pools)
        # The stages that write the program's results outside the warehouse share the program's pool.
        assert graph.get(dg.AssetKey([group, "stored_candidates"])).pools == {f"{group}_batch"}
        assert graph.get(dg.AssetKey([group, "warehouse_export"])).pools == {WAREHOUSE_POOL}


def test_the_gdpr_rewrite_shares_the_exports_pool(definitions):
    job = definitions.get_job_def(GDPR_JOB)
    [node] = job.graph.node_defs
    assert node.pool == WAREHOUSE_POOL


def test_batch_runs_carry_the_tag_the_run_queue_limits(definitions):
    repo = definitions.get_repository_def()
    for group, program_id in _batch_programs(definitions).items():
        assert repo.get_job(f"{group}_batch").tags[BATCH_RUN_TAG] == program_id
    # Only the batch jobs: deliveries and the event path are not queued behind a batch run.
    others = [j for j in repo.get_all_jobs() if not j.name.endswith("_batch") and BATCH_RUN_TAG in j.tags]
    assert others == []


def test_the_instance_config_limits_runs_per_program_and_every_pool_to_one(tmp_path):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        config = instance.get_concurrency_config()
        assert {"key": BATCH_RUN_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
            config.run_queue_config.tag_concurrency_limits
        )
        assert config.pool_config.default_pool_limit == 1
        assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
    finally:
        instance.dispose()
    # `make setup` copies this file to DAGSTER_HOME.
    assert "cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml" in (ROOT / "Makefile").read_text()


def test_the_run_queue_holds_a_second_batch_run_of_a_program_and_lets_others_through(definitions, tmp_path):
    """The counter the queued-run daemon applies (`dagster._utils.tags.TagConcurrencyLimitsCounter`) over runs that
    carry what the batch jobs' runs carry: a second run of a program (another partition, or an overlapping range)
    waits while the first is in progress; another program's run, and a delivery run, do not."""
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    repo = definitions.get_repository_def()

    def run(job: str, **tags: str) -> dg.DagsterRun:
        return dg.DagsterRun(job_name=job, tags={**repo.get_job(job).run_tags, **tags})

    in_progress = run("proactive_refunds_batch", **{"dagster/partition": "2026-11-20"})
    counter = TagConcurrencyLimitsCounter(limits, [in_progress])
    assert counter.is_blocked(run("proactive_refunds_batch", **{"dagster/partition": "2026-11-21"}))
    assert counter.is_blocked(run("proactive_refunds_batch", **{"dagster/partition": "2026-11-20"}))
    assert not counter.is_blocked(run("churn_prevention_batch", **{"dagster/partition": "2026-11-16"}))
    assert not counter.is_blocked(run("proactive_refunds_deliver"))
