"""`pipeline.candidate_records`, rewritten column-wise for speed (issue 14), returns exactly what the row-by-row
version returned: the same records, the same key order (the stored JSON), for every batch program, with and without
offer choice, with context columns of every kind (strings, numbers, dates, timestamps, NULLs) and without a
marketplace column.  `reference_records` is the former implementation, kept here word for word."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from engage_assets.domain import offer_decision, pipeline
from engage_assets.domain.config import ProgramConfig
from tests.test_stage_batches import PROGRAMS, scored_partition, with_budget

BATCH_PROGRAMS = sorted(k for k, p in PROGRAMS.items() if isinstance(p, ProgramConfig))
AS_OF = datetime(2026, 11, 22, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 2, 30, tzinfo=UTC)


def reference_channels(program, seg) -> list[str]:
    out = []
    top = seg is not None and seg.scoreRange[1] >= 1.0
    for ch in sorted((c for c in program.channels if c.enabled), key=lambda c: c.priority):
        cfg = ch.config.model_dump(exclude_none=True)
        if (cfg.get("highImpactOnly") or cfg.get("criticalRiskOnly") or cfg.get("highScoreOnly")) and not top:
            continue
        out.append(ch.channelId)
    return out


def reference_jsonable(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def reference_records(program, offers, partition_key, as_of, model_versions, now):
    """candidate_records as it was before issue 14's rewrite (one row at a time, `json.loads`)."""
    expires = int((as_of + timedelta(days=program.candidateTTLDays)).timestamp())
    segs = {s.name: s for s in program.strategy.segments}
    subject = program.connector.subjectColumn
    score_cols = {m.modelId: pipeline.score_column(m.modelId) for m in program.scoringModels}
    cols = offers.to_pydict()
    ctx_cols = [c for c in pipeline.CONTEXT_FOR_RECORD if c in cols]
    channels = {name: reference_channels(program, seg) for name, seg in segs.items()}
    details = {name: pipeline.offer_details(seg) for name, seg in segs.items()}
    created = now.isoformat()
    chose = "offer_choice" in cols
    records = []
    for i in range(offers.num_rows):
        seg = cols["segment"][i]
        hold = bool(cols["holdout"][i])
        offer = dict(details[cols["offer_segment"][i] if chose else seg])
        offer["valueUsd"] = cols["offer_value_usd"][i]
        records.append(
            {
                "customerId": cols["customer_id"][i],
                "programId": program.programId,
                "partitionKey": partition_key,
                "marketplace": cols["marketplace"][i] if "marketplace" in cols else None,
                "subjectId": str(cols[subject][i]),
                "segment": seg,
                "offerType": cols["offer_type"][i],
                "score": float(cols["score"][i]),
                "scores": {m: float(cols[c][i]) for m, c in score_cols.items()},
                "modelVersions": dict(model_versions),
                "offer": offer,
                "holdout": hold,
                "channels": [] if hold else channels[seg],
                "context": {c: reference_jsonable(cols[c][i]) for c in ctx_cols},
                "createdAt": created,
                "expiresAt": expires,
            }
            | ({"offerChoice": json.loads(cols["offer_choice"][i])} if chose else {})
        )
    return records


def offers_for(program, n: int, seed: int) -> pa.Table:
    """The offers stage's output for `n` scored rows, with context columns of several Arrow types beside it."""
    offers = offer_decision.make_offers(program, scored_partition(n, seed, subjects_per_customer=2)).table
    m = offers.num_rows
    rng = np.random.default_rng(seed)
    extra = {
        "time_zone": pa.array([None if i % 7 == 0 else "Europe/Paris" for i in range(m)]),
        "delay_days": pa.array(rng.integers(0, 30, m)),
        "churn_date": pa.array([date(2026, 10, 1) + timedelta(days=i % 40) for i in range(m)]),
        "engagement_score": pa.array([None if i % 5 == 0 else float(i) / 3 for i in range(m)]),
        "order_value": pa.array([datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(m)]),
    }
    for name, column in extra.items():
        if name not in offers.column_names:
            offers = offers.append_column(name, column)
    return offers


def as_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(records)  # key order included: the stored body is this order


@pytest.mark.parametrize("program_id", BATCH_PROGRAMS)
@pytest.mark.parametrize("choice", [True, False])
def test_column_wise_records_equal_the_row_by_row_ones(program_id, choice):
    program = with_budget(PROGRAMS[program_id], 1e9)
    if not choice:
        program = program.model_copy(update={"offerChoice": None})
    offers = offers_for(program, 600, seed=len(program_id))
    assert offers.num_rows > 100 and ("offer_choice" in offers.column_names) is choice
    versions = {m.modelId: f"v-{i}" for i, m in enumerate(program.scoringModels)}
    new = pipeline.candidate_records(program, offers, "2026-11-21", AS_OF, versions, now=NOW)
    old = reference_records(program, offers, "2026-11-21", AS_OF, versions, NOW)
    assert as_json(new) == as_json(old)
    assert new == old
    assert any(r["holdout"] for r in new) and any(r["context"].get("churn_date") for r in new)


def test_without_marketplace_and_with_a_choice_json_only_the_stdlib_reads():
    program = with_budget(PROGRAMS["win-back-campaigns"], 1e9)
    offers = offers_for(program, 200, seed=3).drop_columns(["marketplace"])
    docs = offers.column("offer_choice").to_pylist()
    docs[0] = docs[0].replace('"chosen"', '"nan":NaN,"chosen"')  # json.loads accepts NaN, orjson refuses it
    offers = offers.set_column(offers.schema.get_field_index("offer_choice"), "offer_choice", pa.array(docs))
    new = pipeline.candidate_records(program, offers, "2026-11-21", AS_OF, {}, now=NOW)
    old = reference_records(program, offers, "2026-11-21", AS_OF, {}, NOW)
    assert as_json(new) == as_json(old)
    assert new[0]["marketplace"] is None and np.isnan(new[0]["offerChoice"]["nan"])


def test_an_empty_offers_table_gives_no_records():
    program = with_budget(PROGRAMS["churn-prevention"], 1e9)
    offers = offers_for(program, 50, seed=1).slice(0, 0)
    assert pipeline.candidate_records(program, offers, "2026-11-21", AS_OF, {}, now=NOW) == []
