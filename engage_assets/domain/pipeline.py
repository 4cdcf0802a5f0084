"""The batch program's stages as plain functions over Arrow tables; the Dagster glue lives in `factory`.

source → eligible (filter chain) → scored (models, score cache) → offers (segments, dedup, holdout, budget:
`offer_decision`) → candidate records (store) → export table.  Each function is vectorised over the whole batch (DuckDB or
NumPy), so the same code serves 500 rows or 10 million.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from engage_assets.domain.bulk import collector_paused
from engage_assets.domain.config import ProgramConfig, ReactiveProgram, Segment
from engage_assets.domain.filter_arrow import first_failed_codes
from engage_assets.domain.filters import chain_outcomes, compile_chain

REJECTION_COLUMNS = ("customer_id", "subject_id", "stage", "filter_id", "reason")


@dataclass
class StageResult:
    table: pa.Table
    rejected: pa.Table  # REJECTION_COLUMNS
    removed: OrderedDict[str, int] = field(default_factory=OrderedDict)


def _constant(n: int, value: str) -> pa.Array:
    """`value` n times, dictionary-encoded: one byte per row instead of a copy of the string per row."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int8)), pa.array([value], pa.string()))


def rejection_rows(
    table: pa.Table, subject_column: str, stage: str, filter_ids: pa.Array, reasons: pa.Array
) -> pa.Table:
    """REJECTION_COLUMNS for `table`'s rows.  `stage` (and `filter_ids`/`reasons` where the caller passes them so)
    are dictionary-encoded strings: a 10M-row partition's rejections cost ids plus a few bytes a row; the rejection
    log writes them as plain strings (`RejectionLogResource`)."""

    def text(a: Any) -> Any:
        return a if pa.types.is_dictionary(a.type) else a.cast(pa.string())

    return pa.table(
        {
            "customer_id": table.column("customer_id").cast(pa.string()),
            "subject_id": table.column(subject_column).cast(pa.string()),
            "stage": _constant(table.num_rows, stage),
            "filter_id": text(filter_ids),
            "reason": text(reasons),
        }
    )


def empty_rejections() -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in REJECTION_COLUMNS})


def source_rejections(program: ProgramConfig, rejected: pa.Table, filter_id: str = "source-validation") -> pa.Table:
    """The source stage's rejection log rows for `rejected` (with its `rejection_reason`), under `filter_id`."""
    n = rejected.num_rows
    return rejection_rows(
        rejected,
        program.connector.subjectColumn,
        "source_candidates",
        _constant(n, filter_id),
        rejected.column("rejection_reason"),
    )


def apply_filter_chain(program: ProgramConfig | ReactiveProgram, table: pa.Table) -> StageResult:
    """Run the config's filter chain in order; one pass (DuckDB; Arrow for a few rows) finds, per row, the first check
    it fails and how.

    A batch program's partition and a reactive program's micro-batch of events go through the same compiled SQL;
    rows are keyed by `customer_id` and the program's `subject_column` (the connector's, or the cart).  A rejected
    row's reason is its failing check's own (FALSE: the rule's threshold; NULL: the value the rule needed is
    unknown), and `removed` counts the rows each filter took out.

    Only the rejected rows' positions and codes leave DuckDB: the batch is never copied, so a partition of
    10 million rows costs its eligible rows, the rejected rows' ids and a few bytes per row (not a second copy of
    every column).  Positions, not output order, align the labels with the rows.
    """
    chain = compile_chain(program.ordered_filters(), set(table.column_names))
    outcomes = chain_outcomes(chain)
    first_failed = first_failed_codes(chain, table)  # DuckDB; Arrow compute for a few rows (`filter_arrow`)
    keep = first_failed < 0
    rejected_rows = np.flatnonzero(~keep)
    codes = first_failed[rejected_rows]
    by_filter = outcomes.filter_index[codes]
    counts = np.bincount(by_filter, minlength=len(chain)) if len(rejected_rows) else np.zeros(len(chain), int)
    removed = OrderedDict((f.filter_id, int(counts[i])) for i, f in enumerate(chain))
    subject = program.subject_column
    ids = table.select(list(dict.fromkeys(["customer_id", subject]))).take(pa.array(rejected_rows))
    return StageResult(
        table.filter(pa.array(keep)),
        rejection_rows(
            ids,
            subject,
            "eligible_candidates",
            pa.DictionaryArray.from_arrays(
                pa.array(by_filter, pa.int32()), pa.array([f.filter_id for f in chain], pa.string())
            ),
            pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(outcomes.reasons, pa.string())),
        ),
        removed,
    )


# ---- scoring ---------------------------------------------------------------------------------------------


def feature_frame(table: pa.Table, features: list[str]) -> pd.DataFrame:
    missing = [f for f in features if f not in table.column_names]
    if missing:
        raise ValueError(f"the candidates lack model feature column(s) {missing}")
    return table.select(features).to_pandas()


def cache_keys(table: pa.Table, subject_column: str, features: pd.DataFrame) -> list[str]:
    """Cache key per row: subject + a hash of its feature values (a changed feature is a cache miss)."""
    digest = pd.util.hash_pandas_object(features, index=False).to_numpy()
    subjects = table.column(subject_column).cast(pa.string()).to_pylist()
    return [f"{s}:{d:016x}" for s, d in zip(subjects, digest, strict=False)]


def score_column(model_id: str) -> str:
    return "score__" + model_id.replace("-", "_").replace(".", "_")


# ---- offers: `domain.offer_decision` ---------------------------------------------------------------------


# ---- candidate records -----------------------------------------------------------------------------------


def _static_channels(program: ProgramConfig, seg: Segment | None) -> list[str]:
    """Enabled channels whose segment conditions hold (send-time conditions are the delivery's job), highest
    `priority` first."""
    out = []
    top = seg is not None and seg.scoreRange[1] >= 1.0
    for ch in sorted((c for c in program.channels if c.enabled), key=lambda c: c.priority):
        cfg = ch.config.model_dump(exclude_none=True)
        if (cfg.get("highImpactOnly") or cfg.get("criticalRiskOnly") or cfg.get("highScoreOnly")) and not top:
            continue
        out.append(ch.channelId)
    return out


def offer_details(seg: Segment) -> dict[str, Any]:
    details = {k: v for k, v in seg.model_dump(exclude_none=True).items() if k != "scoreRange"}
    details["offerType"] = seg.offer_type
    return details


CONTEXT_FOR_RECORD = (
    *("time_zone", "subscription_tier", "order_id", "delay_days", "item_condition", "order_value", "currency"),
    *("churn_reason", "churn_date", "engagement_score"),
)


def candidate_records(
    program: ProgramConfig,
    offers: pa.Table,
    partition_key: str,
    as_of: datetime,
    model_versions: Mapping[str, str],
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The unified candidate record (ARCHITECTURE §5) per offer row: columns converted once and zipped, the choice's
    JSON parsed by orjson (per-row indexing and `json.loads` were most of the store stage's Python time, issue 14)."""
    now = now or datetime.now(UTC)
    expires = int((as_of + timedelta(days=program.candidateTTLDays)).timestamp())
    segs = {s.name: s for s in program.strategy.segments}
    cols, n = offers.to_pydict(), offers.num_rows
    channels = {name: _static_channels(program, seg) for name, seg in segs.items()}
    details = {name: offer_details(seg) for name, seg in segs.items()}
    model_ids = [m.modelId for m in program.scoringModels]
    scores = zip(*[[float(v) for v in cols[score_column(m)]] for m in model_ids], strict=True) if model_ids else None
    ctx_names = [c for c in CONTEXT_FOR_RECORD if c in cols]
    ctx_rows = zip(*[[_jsonable(v) for v in cols[c]] for c in ctx_names], strict=True) if ctx_names else None
    chose = "offer_choice" in cols  # the choice and its inputs are stored with the candidate
    offer_keys = cols["offer_segment"] if chose else cols["segment"]  # offerChoice: the chosen offer's
    with collector_paused():  # acyclic records: the collector's passes were most of the time (`bulk`)
        choices = [_loads(doc) for doc in cols["offer_choice"]] if chose else [None] * n
        names = ("customer_id", program.connector.subjectColumn, "segment", "offer_type", "score", "offer_value_usd")
        markets = cols["marketplace"] if "marketplace" in cols else [None] * n
        rows = zip(*(cols[c] for c in names), markets, offer_keys, cols["holdout"], choices, strict=True)
        program_id, created, records = program.programId, now.isoformat(), []
        for customer, subject, seg, offer_type, score, value, market, offer_key, holdout, choice in rows:
            hold = bool(holdout)
            record = {
                "customerId": customer,
                "programId": program_id,
                "partitionKey": partition_key,
                "marketplace": market,
                "subjectId": str(subject),
                "segment": seg,
                "offerType": offer_type,
                "score": float(score),
                "scores": dict(zip(model_ids, next(scores), strict=True)) if scores is not None else {},
                "modelVersions": dict(model_versions),
                "offer": {**details[offer_key], "valueUsd": value},
                "holdout": hold,
                "channels": [] if hold else channels[seg],
                "context": dict(zip(ctx_names, next(ctx_rows), strict=True)) if ctx_rows is not None else {},
                "createdAt": created,
                "expiresAt": expires,
            }
            if chose:
                record["offerChoice"] = choice
            records.append(record)
    return records


def _loads(doc: str) -> Any:
    """A stored choice's JSON (orjson; the stdlib where orjson refuses what `json` accepts, e.g. NaN)."""
    try:
        return orjson.loads(doc)
    except orjson.JSONDecodeError:
        return json.loads(doc)


def _jsonable(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else v


def export_table(
    program: ProgramConfig, offers: pa.Table, partition_key: str, model_versions: Mapping[str, str]
) -> pa.Table:
    """What analysts query: one row per stored candidate, flat columns, no PII."""
    keep = [c for c in offers.column_names if not c.startswith("_")]
    out = offers.select(keep)
    n = out.num_rows
    out = out.append_column("program_id", pa.array([program.programId] * n, pa.string()))
    out = out.append_column("partition_key", pa.array([partition_key] * n, pa.string()))
    return out.append_column("model_versions", pa.array([json.dumps(dict(model_versions), sort_keys=True)] * n))


def funnel_markdown(stages: list[tuple[str, int]]) -> str:
    lines = ["| stage | rows | removed |", "|---|---:|---:|"]
    prev = None
    for name, n in stages:
        lines.append(f"| {name} | {n:,} | {'' if prev is None else f'{prev - n:,}'} |")
        prev = n
    return "\n".join(lines)


def score_distribution(offers: pa.Table) -> dict[str, dict[str, Any]]:
    """Per segment: count, mean and quantiles of the segmenting score, holdout size."""
    if offers.num_rows == 0:
        return {}
    df = offers.select(["segment", "score", "holdout"]).to_pandas()
    out = {}
    for seg, g in df.groupby("segment", sort=True):
        out[str(seg)] = {
            "count": int(len(g)),
            "holdout": int(g["holdout"].sum()),
            "mean": round(float(g["score"].mean()), 3),
            "p10": round(float(g["score"].quantile(0.1)), 3),
            "p90": round(float(g["score"].quantile(0.9)), 3),
        }
    return out
