"""The stages after `eligible_candidates` stream a partition in record batches (#14, item 3): scoring, offers, the
store and the export give the same partition with batches of 7 rows as with one batch, metadata included; and the
offers are today's `make_offers` over the whole partition (the budget, a whole-partition rank, and deduplication
across a customer's subjects stay exact).

The programs' own configs, with a budget small enough to bind, customers with several subjects, tied scores."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from upath import UPath

from engage_assets.assets.program.offers import offers_partition
from engage_assets.assets.program.partitions import PartitionWindow
from engage_assets.assets.program.scoring import score_partition
from engage_assets.assets.program.store import store_partition
from engage_assets.domain import offer_decision, pipeline
from engage_assets.domain.config import load_programs
from engage_assets.domain.models import ModelRef, ModelRegistry, train_model
from engage_assets.settings import PROJECT_ROOT
from resources.batches import ParquetBatches, write_batches_to
from resources.engagement.sqlite import SqliteEngagementStore
from resources.exports.local import LocalParquetExports
from resources.scoring.local import LocalScoringResource
from resources.staging import RejectionLogResource
from resources.store.sqlite import SqliteCandidateStore

PROGRAMS = {p.programId: p for p in load_programs(PROJECT_ROOT / "program_configs")}
WINDOW = PartitionWindow("2026-11-09", date(2026, 11, 9), date(2026, 11, 10))
ONE_BATCH = 1_000_000
SMALL = 7


def with_budget(program, amount):
    return program.model_copy(update={"budget": program.budget.model_copy(update={"amount": amount})})


def scored_partition(n: int, seed: int, subjects_per_customer: int) -> pa.Table:
    """What `scored_candidates` writes, for every program's offer choice: customers with several subjects (orders),
    scores rounded to two decimals so many tie."""
    rng = np.random.default_rng(seed)
    customers = [f"C{i // subjects_per_customer:05d}" for i in range(n)]
    score = np.round(rng.random(n), 2)
    models = {pipeline.score_column(m.modelId) for p in PROGRAMS.values() for m in p.scoringModels}
    return pa.table(
        {m: np.round(rng.random(n), 2) for m in sorted(models)}
        | {
            "customer_id": customers,
            "order_id": [f"O{i:06d}" for i in range(n)],
            "score": score,
            "order_value_usd": np.round(rng.uniform(20, 200, n), 2),
            "monthly_revenue_usd": np.round(rng.uniform(10, 80, n), 2),
            "marketplace": ["US"] * n,
            "lifetime_value_usd": np.round(rng.uniform(200, 3_000, n), 2),
            "churn_reason": rng.choice(["price", "support"], n),
            "score__churn_risk_v3": np.round(rng.random(n), 2),
            "score__churn_risk_v6": score,
            "score__refund_propensity_v4": score,
            "score__satisfaction_impact_v4": score,
            "score__win_back_likelihood_v3": score,
            "score__offer_effectiveness_v2": np.round(rng.random(n), 2),
        }
    )


def run_offers(program, source: Path, rows: int, tmp: Path):
    figures: list = []
    rejections = RejectionLogResource(base_path=str(tmp / f"rejections-{rows}"))
    out = offers_partition(program, rejections, WINDOW, ParquetBatches(UPath(source), rows), figures)
    target = tmp / f"offers-{rows}.parquet"
    write_batches_to(out.batches, UPath(target))
    meta = out.metadata(str(target))
    rejected = pq.read_table(
        tmp / f"rejections-{rows}" / program.group / "rejections" / "offers" / "2026-11-09.parquet"
    )
    return pq.read_table(target), meta, figures, rejected


def by_subject(table: pa.Table, subject: str) -> pd.DataFrame:
    df = table.to_pandas()
    return df.sort_values(["customer_id", subject]).reset_index(drop=True)


@pytest.mark.parametrize("program_id", ["proactive-refunds", "win-back-campaigns", "churn-prevention"])
@pytest.mark.parametrize("choice", [True, False])
def test_offers_in_batches_of_7_are_the_partition_decided_at_once(program_id, choice, tmp_path):
    program = with_budget(PROGRAMS[program_id], 2_500.0)  # binds: a few dozen offers of this partition's ~300
    if not choice:
        program = program.model_copy(update={"offerChoice": None})
    scored = scored_partition(600, seed=7, subjects_per_customer=3)
    source = tmp_path / "scored.parquet"
    pq.write_table(scored, source)

    small = run_offers(program, source, SMALL, tmp_path)
    whole = run_offers(program, source, ONE_BATCH, tmp_path)
    assert small[0].equals(whole[0])  # the same rows in the same order, every column
    assert small[1] == whole[1] and small[2] == whole[2]  # metadata and the checks' figures
    assert small[3].equals(whole[3])  # rejections

    # ... and what one make_offers call over the partition (the stage before streaming) decides
    before = offer_decision.make_offers(program, scored)
    subject = program.connector.subjectColumn
    assert by_subject(small[0], subject).equals(by_subject(before.table, subject))
    assert {f"removed/{k}": v for k, v in before.removed.items()}.items() <= small[1].items()
    assert before.removed["budget"] > 0 and before.removed["deduplication"] > 0  # both whole-partition rules bite
    assert sorted(small[3].column("subject_id").to_pylist()) == sorted(before.rejected.column("subject_id").to_pylist())


def test_an_empty_partition_gives_an_empty_offers_file(tmp_path):
    program = PROGRAMS["win-back-campaigns"]
    source = tmp_path / "scored.parquet"
    pq.write_table(scored_partition(0, seed=1, subjects_per_customer=1), source)
    table, meta, figures, rejected = run_offers(program, source, SMALL, tmp_path)
    assert table.num_rows == 0 and "segment" in table.column_names
    assert meta["dagster/row_count"] == 0 and rejected.num_rows == 0 and len(figures) == 1


# ---- scoring -----------------------------------------------------------------------------------------------------


def eligible_partition(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ltv = rng.uniform(200, 3_000, n)
    ltv[::11] = np.nan  # a NULL feature: imputed, and counted in the metadata
    return pa.table(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "lifetime_value_usd": pa.array(ltv, from_pandas=True),
            "churn_reason": rng.choice(["price", "features", "support"], n),
            "subscription_tenure_months": rng.integers(1, 72, n),
            "engagement_history": rng.random(n),
            "discount_sensitivity": rng.random(n),
            "feature_requests": rng.integers(0, 10, n),
            "competitor_activity": rng.random(n),
            "monthly_revenue_usd": rng.uniform(10, 80, n),
            "marketplace": ["US"] * n,
        }
    )


def trained_refs(program, root: Path) -> dict[str, ModelRef]:
    """Every model of the program trained on a logistic process over its features, saved in a registry."""
    registry, refs = ModelRegistry(root), {}
    for spec in program.scoringModels:
        data = eligible_partition(4_000, seed=3).to_pandas()
        numeric = [f for f in spec.features if f != "churn_reason"]
        z = sum(np.nan_to_num((data[f] - data[f].mean()) / data[f].std()) for f in numeric)
        data[spec.label] = np.random.default_rng(4).random(len(data)) < 1 / (1 + np.exp(-z))
        trained = train_model(spec.modelId, program.programId, spec.features, data, spec.label)
        path = registry.save(trained)
        refs[spec.modelId] = ModelRef(
            spec.modelId, program.programId, trained.version, spec.endpoint, tuple(spec.features), str(path)
        )
    return refs


def test_scoring_in_batches_of_7_is_the_partition_scored_at_once(tmp_path):
    program = PROGRAMS["win-back-campaigns"]
    refs = trained_refs(program, tmp_path / "models")
    source = tmp_path / "eligible.parquet"
    pq.write_table(eligible_partition(500, seed=9), source)

    def run(rows: int) -> tuple[pa.Table, dict]:
        store = SqliteCandidateStore(path=str(tmp_path / f"store-{rows}.sqlite"))
        out = score_partition(program, refs, LocalScoringResource(), store, ParquetBatches(UPath(source), rows))
        target = tmp_path / f"scored-{rows}.parquet"
        write_batches_to(out.batches, UPath(target))
        return pq.read_table(target), out.metadata(str(target))

    small, whole = run(SMALL), run(ONE_BATCH)
    assert small[0].equals(whole[0]) and small[0].schema.metadata == whole[0].schema.metadata
    assert small[1] == whole[1]
    assert (
        small[1]["dagster/row_count"] == 500 and small[1]["imputed/win-back-likelihood-v3"] == "lifetime_value_usd=46"
    )
    assert small[1]["cache_hits/win-back-likelihood-v3"] == 0
    again = run(SMALL)  # the score cache, filled batch by batch, answers every row the second time
    assert again[0].equals(small[0]) and again[1]["cache_hits/win-back-likelihood-v3"] == 500


# ---- store and export ----------------------------------------------------------------------------------------


def test_store_and_export_in_batches_of_7_write_the_partition_written_at_once(tmp_path):
    program = with_budget(PROGRAMS["proactive-refunds"], 1e9)
    source = tmp_path / "scored.parquet"
    pq.write_table(scored_partition(300, seed=5, subjects_per_customer=2), source)
    offers, *_ = run_offers(program, source, ONE_BATCH, tmp_path)
    offers_path = tmp_path / "offers.parquet"
    pq.write_table(offers.replace_schema_metadata({"engage.model_versions": '{"m": "v1"}'}), offers_path)

    def stored(rows: int) -> tuple[list, dict]:
        store = SqliteCandidateStore(path=str(tmp_path / f"store-{rows}.sqlite"))
        engagement = SqliteEngagementStore(path=str(tmp_path / f"engagement-{rows}.sqlite"))
        engagement.delete_customer("C00003")  # erased (GDPR): never written
        history = LocalParquetExports(root=str(tmp_path / f"history-{rows}"), warehouse_path=str(tmp_path / "w.db"))
        _, meta = store_partition(program, store, engagement, WINDOW, ParquetBatches(UPath(offers_path), rows), history)
        records = sorted(
            (r["customerId"], r["subjectId"], r["offer"]["valueUsd"], r["holdout"], r["modelVersions"]["m"])
            for i in range(150)
            for r in store.customer_candidates(f"C{i:05d}")
        )
        meta.pop("store_seconds")
        return records, meta

    small, whole = stored(SMALL), stored(ONE_BATCH)
    assert small == whole
    assert len(small[0]) == offers.num_rows - 1 and small[1]["excluded_erased"] == 1
    assert small[1]["dagster/row_count"] == small[1]["written"] == small[1]["stored_in_partition"] == len(small[0])

    exports = LocalParquetExports(root=str(tmp_path / "exports"), warehouse_path=str(tmp_path / "w.db"))
    path, rows = exports.write_partition_batches("p-small", "2026-11-09", ParquetBatches(offers_path, SMALL).tables())
    assert rows == offers.num_rows and pq.read_table(path).equals(pq.read_table(offers_path))
    whole_path = exports.write_partition("p-whole", "2026-11-09", pq.read_table(offers_path))
    assert pq.read_table(path).equals(pq.read_table(whole_path))


def test_a_bad_batch_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="batch_rows"):
        ParquetBatches(tmp_path / "x.parquet", 0)


def test_stage_files_are_readable_by_others_like_files_written_in_place(tmp_path):
    """Written through a temporary file (mkstemp makes it owner-only), then renamed: dbt and analysts read them."""
    from resources.staging import _write_parquet

    write_batches_to([pa.table({"x": [1]})], UPath(tmp_path / "batches.parquet"))
    _write_parquet(pa.table({"x": [1]}), UPath(tmp_path / "table.parquet"))
    from resources.file_mode import PUBLISHED_MODE

    mask = os.umask(0o022)
    os.umask(mask)
    assert PUBLISHED_MODE == 0o666 & ~mask  # the umask's say, as for a file written in place (0o644 under 022)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "batches.parquet": PUBLISHED_MODE,
        "table.parquet": PUBLISHED_MODE,
    }


@pytest.mark.parametrize(("program_id", "choice"), [("win-back-campaigns", False), ("proactive-refunds", True)])
def test_nan_scores_rank_last_in_batches_as_in_one_batch(program_id, choice, tmp_path):
    """DuckDB sorts NaN above every number, NumPy's sorts put it last: the budget's order puts a NaN score or priority
    last too (a NaN-scored subject had lent its customer the first turn at the budget: 33 offers in 7-row batches
    against 18 in one batch, found by review)."""
    program = with_budget(PROGRAMS[program_id], 2_500.0)
    if not choice:
        program = program.model_copy(update={"offerChoice": None})
    scored = scored_partition(600, seed=7, subjects_per_customer=3)
    score = scored.column("score").to_numpy().copy()
    score[::3] = np.nan
    scored = scored.set_column(scored.schema.get_field_index("score"), "score", pa.array(score))
    source = tmp_path / "scored.parquet"
    pq.write_table(scored, source)
    small, whole = run_offers(program, source, SMALL, tmp_path), run_offers(program, source, ONE_BATCH, tmp_path)
    assert small[0].equals(whole[0]) and small[1] == whole[1] and small[3].equals(whole[3])
    assert small[1]["removed/budget"] > 0 and small[0].num_rows > 0
