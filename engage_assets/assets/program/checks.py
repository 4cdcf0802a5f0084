"""The blocking checks on `[group, "offers"]`: offers within the program's budget; the holdout share near the
configured percent and every candidate in a segment.  The offers asset evaluates them as it runs (`check_specs`),
on the per-partition figures `offer_check_figures` collects.

The check on `[group, "source_candidates"]`: a partition whose source query returned no rows (a late or missing
load) is flagged (WARN), never a silent success.  Dagster evaluates a check once per run, so a range run's result
names the empty partitions among its own."""

from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from engage_assets.assets.program.common import stage_key
from engage_assets.domain.config import ProgramConfig


def offer_check_specs(program: ProgramConfig) -> list[dg.AssetCheckSpec]:
    """The specs of the offers asset's checks (blocking: a failed check stops the run before anything is stored)."""
    offers = stage_key(program, "offers")
    return [
        dg.AssetCheckSpec(
            "within_budget",
            asset=offers,
            blocking=True,
            description="Offers never exceed the program's budget.",
        ),
        dg.AssetCheckSpec(
            "holdout_and_segments",
            asset=offers,
            blocking=True,
            description="The holdout share is near the configured percent and every candidate has a segment.",
        ),
    ]


SOURCE_NOT_EMPTY = "source_not_empty"


def source_check_spec(program: ProgramConfig) -> dg.AssetCheckSpec:
    """The spec of the source's check (not blocking: an empty day may be real; the warning says to look)."""
    return dg.AssetCheckSpec(
        SOURCE_NOT_EMPTY,
        asset=stage_key(program, "source_candidates"),
        description=f"Every partition's `{program.connector.config.table}` query returned rows: an empty "
        "partition (a late or missing load) is flagged, not a silent success.",
    )


def source_check_result(program: ProgramConfig, rows_read: dict[str, int]) -> dg.AssetCheckResult:
    """The source check over the run's partitions ({partition_key: rows the query returned})."""
    empty = [pk for pk, n in rows_read.items() if n == 0]
    table = program.connector.config.table
    return dg.AssetCheckResult(
        check_name=SOURCE_NOT_EMPTY,
        passed=not empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(empty)} of {len(rows_read)} partitions read no rows from `{table}`: {', '.join(empty)}. "
            "A late or missing load? Nothing was stored or planned for them; re-run them once the data is in."
        )
        if empty
        else f"Every partition read rows from `{table}`.",
        metadata={
            "empty_partitions": ", ".join(empty) or "none",
            "partitions": len(rows_read),
            "fewest_rows_read": min(rows_read.values(), default=0),
        },
    )


def offer_check_figures(program: ProgramConfig, partition_key: str, offers: pa.Table) -> dict[str, Any]:
    """One partition's figures for the checks: offer cost, holdout share (and whether it is within four standard
    errors of the configured percent), candidates without a segment."""
    holdout = np.asarray(offers.column("holdout"), dtype=bool)
    cost = float(np.asarray(offers.column("offer_value_usd"))[~holdout].sum())
    n = offers.num_rows
    share = float(holdout.mean()) if n else 0.0
    expected = program.holdout.percent / 100
    tolerance = 4 * float(np.sqrt(expected * (1 - expected) / n)) + 0.002 if n else 1.0
    return {
        "partition": partition_key,
        "cost": cost,
        "share": share,
        "holdout_ok": abs(share - expected) <= tolerance,
        "missing_segment": offers.column("segment").null_count,
    }


def offer_check_results(program: ProgramConfig, figures: list[dict[str, Any]]) -> list[dg.AssetCheckResult]:
    """Both checks over every partition of the run: each must hold in the worst partition."""
    worst_cost = max(c["cost"] for c in figures)
    return [
        dg.AssetCheckResult(
            check_name="within_budget",
            passed=worst_cost <= program.budget.amount + 1e-6,
            metadata={"offer_cost_usd": round(worst_cost, 2), "budget_usd": program.budget.amount},
        ),
        dg.AssetCheckResult(
            check_name="holdout_and_segments",
            passed=all(c["holdout_ok"] and c["missing_segment"] == 0 for c in figures),
            metadata={
                "holdout_share": round(min(c["share"] for c in figures), 4),
                "expected": program.holdout.percent / 100,
                "missing_segment": sum(c["missing_segment"] for c in figures),
            },
        ),
    ]
