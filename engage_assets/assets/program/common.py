"""What every stage of a program's asset family shares: stage names, asset keys, tags and metadata helpers."""

import json

import dagster as dg
import pyarrow as pa

from engage_assets.domain.config import ProgramConfig

STAGES = (
    "source_candidates",
    "eligible_candidates",
    "scored_candidates",
    "offers",
    "stored_candidates",
    "warehouse_export",
)
# Schema metadata that carries {model_id: version} from the scores to the stored and exported candidates.
MODEL_VERSIONS_KEY = "engage.model_versions"


def model_asset_name(model_id: str) -> str:
    """The asset name of a model, e.g. `churn-risk-v6` → `churn_risk_v6_model`."""
    return model_id.replace("-", "_").replace(".", "_") + "_model"


def stage_key(program: ProgramConfig, stage: str) -> dg.AssetKey:
    """`[group, stage]`: the key of one of the program's assets."""
    return dg.AssetKey([program.group, stage])


def program_tags(program: ProgramConfig) -> dict[str, str]:
    """The tags every asset and job of the program carries."""
    return {"engage/program": program.programId}


def counts_md(counts: dict[str, int], header: str) -> str:
    """A two-column Markdown table of counts, for asset metadata."""
    lines = [f"| {header} | rows |", "|---|---:|"] + [f"| {k} | {v:,} |" for k, v in counts.items()]
    return "\n".join(lines)


def versions_json(versions: dict[str, str]) -> str:
    """{model_id: version} as the schema-metadata value (sorted keys, so equal maps give equal bytes)."""
    return json.dumps(versions, sort_keys=True)


def model_versions(table: pa.Table) -> dict[str, str]:
    """The {model_id: version} a scored table was stamped with (empty when unscored)."""
    raw = (table.schema.metadata or {}).get(MODEL_VERSIONS_KEY.encode(), b"{}")
    return json.loads(raw)
