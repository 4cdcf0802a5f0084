"""Writing the platform's own history (`engage_assets.domain.history`) where the warehouse reads it: the
`platform_history` resource (an `ExportResource`: Parquet under ENGAGE_HOME/history locally, S3 in production),
one file per program and partition, which dbt's `platform` source reads (`marts.offer_history` is a view over it,
so a program's next run sees the offers without a warehouse build in between).

Nothing here writes the warehouse file itself: DuckDB allows one writing process, and dbt owns it.

- `record_offers`: by `stored_candidates`, for each partition it stores (re-running replaces the file); the
  partition's assignments (every stored candidate, the holdout included) beside them.
- `record_decided`: by a reactive program's decision run, the assignments of the candidates it stored.
- `record_contacts`: by `deliveries`, after each run, for every day whose touch-plan partitions had a touch sent in
  the run: that day's file is rewritten from the ledger's sent touches (so it always holds all of them, whichever
  run sent them).  A run that dies after sending leaves its day's file behind until the next send of that day; the
  offers, which the filters count, do not depend on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from engage_assets.domain import history
from engage_assets.domain.config import ProgramBase, ProgramConfig
from resources.delivery_ledger.base import DeliveryLedgerBackend, idempotency_key
from resources.exports.base import ExportResource


def record_offers(
    platform_history: ExportResource, program: ProgramConfig, partition_key: str, as_of: date, offers: pa.Table
) -> dict[str, Any]:
    """Write one partition's offers (its stored candidates less the holdout) and its assignments (every stored
    candidate, the holdout included); metadata for the partition."""
    loaded, subject = datetime.now(UTC), program.connector.subjectColumn
    table = history.offer_rows(program.programId, subject, offers, partition_key, as_of, loaded)
    platform_history.write_partition(history.history_name(history.OFFERS, program.group), partition_key, table)
    assigned = history.assignment_rows(program.programId, subject, offers, partition_key, as_of, loaded)
    name = history.history_name(history.ASSIGNMENTS, program.group)
    platform_history.write_partition(name, partition_key, assigned)
    return {"history/offers": table.num_rows, "history/assignments": assigned.num_rows}


def record_decided(
    platform_history: ExportResource, program: ProgramBase, hour: str, records: Sequence[Mapping[str, Any]]
) -> int:
    """Write the assignments of a reactive program's decision run (its stored candidates, the holdout included):
    one file per set of candidates (`<hour>_<digest of their offer ids>`), so replaying an hour that decides nothing
    new writes nothing and never replaces an earlier run's file; how many rows."""
    if not records:
        return 0
    table = history.assignments_of_records(records, datetime.now(UTC))
    digest = hashlib.sha256("\n".join(sorted(table.column("offer_id").to_pylist())).encode()).hexdigest()[:16]
    name = history.history_name(history.ASSIGNMENTS, program.group)
    platform_history.write_partition(name, f"{hour}_{digest}", table)
    return table.num_rows


def history_days(partition_keys: Iterable[str]) -> list[str]:
    """The days (`YYYY-MM-DD`) of touch-plan partition keys: a batch partition's key is its day; a reactive
    program's (`<abandoned at>Z~<cart id>`) starts with it."""
    return sorted({key[:10] for key in partition_keys})


def record_contacts(
    platform_history: ExportResource, ledger: DeliveryLedgerBackend, program: ProgramBase, days: Iterable[str]
) -> int:
    """Rewrite each day's contact file of the program from the ledger's sent touches; how many contacts in all."""
    name = history.history_name(history.CONTACTS, program.group)
    loaded = datetime.now(UTC)
    total = 0
    for day in sorted(set(days)):
        end = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        touches = [
            {
                **r.touch_dict(),
                "touchRef": idempotency_key(r.touch_key),
                "sentAt": r.sent_at,
                "providerId": r.provider_id,
            }
            for r in ledger.sent_touches(program.programId, day, end)
        ]
        table = history.contact_rows(touches, loaded)
        platform_history.write_partition(name, day, table)
        total += table.num_rows
    return total
