"""What every stage of a program's asset family shares: stage names, asset keys, tags, pools, metadata helpers and
the GDPR re-check before a write."""

import json
from collections.abc import Collection

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from engage_assets.assets.keys import model_asset_name as model_asset_name  # shared with the event path
from engage_assets.domain.config import ProgramConfig
from resources.engagement.base import EngagementStore

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


def stage_key(program: ProgramConfig, stage: str) -> dg.AssetKey:
    """`[group, stage]`: the key of one of the program's assets."""
    return dg.AssetKey([program.group, stage])


def program_tags(program: ProgramConfig) -> dict[str, str]:
    """The tags every asset and job of the program carries."""
    return {"engage/program": program.programId}


# The run tag of a program's batch runs: the run queue (dagster.yaml `tag_concurrency_limits`) runs one at a time
# per program, so two runs never work on one program partition at once.
BATCH_RUN_TAG = "engage/batch"


def program_pool(program: ProgramConfig) -> str:
    """The concurrency pool (limit 1: `default_limit` in dagster.yaml) of the program's stages that do not open the
    warehouse (those are in the warehouse pool, also limit 1): however a run was launched (an asset backfill from
    the UI carries no job tags), two steps of the program's batch never run at once."""
    return f"{program.group}_batch"


def without_customers(table: pa.Table, customers: Collection[str], column: str = "customer_id") -> tuple[pa.Table, int]:
    """`table` without the rows of these customers (GDPR deletions), and how many rows that removed."""
    if not customers or not table.num_rows:
        return table, 0
    erased = pa.array(sorted(customers), pa.string())
    kept = table.filter(pc.invert(pc.is_in(table.column(column).cast(pa.string()), erased)))
    return kept, table.num_rows - kept.num_rows


def erased_since(engagement: EngagementStore, before: Collection[str], table: pa.Table) -> set[str]:
    """The customers of `table` whose deletion was recorded after `before` was read (during a write)."""
    late = engagement.deleted_customers() - set(before)
    if not late or not table.num_rows:
        return set()
    return late & set(table.column("customer_id").cast(pa.string()).to_pylist())


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
