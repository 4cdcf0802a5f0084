"""The DynamoDB candidate store's chunked partition write: each chunk put as it comes, the stale items deleted at
the commit.  `replace_partition` is this write with one chunk.

DynamoDB has no multi-item transaction of a partition's size, so (as `replace_partition` always did) readers see
the partition's items change batch by batch; what the write holds is the set of customer ids written (to delete the
partition's others at the end), never the records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from resources.dynamodb import GET_BATCH
from resources.store.base import PartitionWrite, Record, WriteResult, resolve_now, validate_records
from resources.store.dynamodb_items import to_item

if TYPE_CHECKING:
    from resources.store.dynamodb import DynamoDbCandidateStore


class DynamoDbPartitionWrite(PartitionWrite):
    """See the module docstring."""

    def __init__(self, store: DynamoDbCandidateStore, program_id: str, partition_key: str, now: float | None = None):
        validate_records(program_id, partition_key, [])  # the keys themselves, before anything is written
        self.store, self.program_id, self.partition_key = store, program_id, partition_key
        self.now = resolve_now(now)
        self.wanted: set[str] = set()
        self.result = WriteResult(extra={"put_batches": 0, "delete_batches": 0, "get_calls": 0})
        self.duplicates = 0
        self.skipped: set[str] = set()

    def add(self, records: Sequence[Record]) -> None:
        """Put the chunk's records, but those whose customer holds a live candidate of a newer partition."""
        unique, duplicates = validate_records(self.program_id, self.partition_key, records)
        again = sum(r["customerId"] in self.wanted for r in unique)
        self.duplicates += duplicates + again
        newer = self.store._newer_elsewhere(self.program_id, self.partition_key, unique, self.now)
        puts = [
            {"PutRequest": {"Item": to_item(r, self.program_id, self.partition_key)}}
            for r in unique
            if r["customerId"] not in newer
        ]
        batches, retries = self.store._write_all(self.store.table_name, puts)
        written = {r["customerId"] for r in unique} - newer
        self.result.written += len(written - self.wanted)
        self.skipped |= newer
        self.wanted |= {r["customerId"] for r in unique}
        self.result.batches += batches
        self.result.retries += retries
        self.result.extra["put_batches"] += batches
        self.result.extra["get_calls"] += math.ceil(len(unique) / GET_BATCH)

    def commit(self) -> WriteResult:
        """Delete the partition's items of customers not written (GSI3, keys only)."""
        stale = self.store._stale_deletes(self.program_id, self.partition_key, self.wanted)
        batches, retries = self.store._write_all(self.store.table_name, stale)
        self.result.deleted = len(stale)
        self.result.skipped_newer = len(self.skipped)
        self.result.batches += batches
        self.result.retries += retries
        self.result.extra["delete_batches"] = batches
        self.result.extra["duplicates_dropped"] = self.duplicates
        return self.result
