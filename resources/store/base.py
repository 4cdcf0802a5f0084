"""Candidate store: the interface of ARCHITECTURE.md §5 and its backends.

Key design (mirrors the spec's DynamoDB tables):
  PK     = customerId#programId            (one live candidate per customer and program)
  GSI1   = programId#segment   sorted by score (descending reads)
  GSI2   = programId#offerType sorted by partitionKey#customerId
  GSI4   = programId#offerType sorted by score (descending reads; GetCandidatesByScore)
  GSI5   = programId#churnReason sorted by partition date, then score (descending reads; the win-back spec's
           "Program:ChurnReason:Date"); the churn reason is the record's context["churn_reason"] (`churn_index_key`)
  expiresAt (epoch seconds) is the TTL; every read filters expired items, whatever the backend's deletion lag.
  Holdout candidates (the control group) carry no GSI1/GSI2/GSI4/GSI5 keys: stored, never served (`index_keys`).

Backends (one contract test suite, tests/test_store_contract.py, runs against both):
  SqliteCandidateStore   resources/store/sqlite.py    embedded default: one WAL file, the keys above as columns
  DynamoDbCandidateStore resources/store/dynamodb.py  production: physically pk=customerId, sk=programId (the
                         same identity as customerId#programId, and a customer's candidates are one Query), GSI1,
                         GSI2, and GSI3 = programId / partitionKey#customerId to find a partition's items
Both import lazily from here (`from resources.store.base import SqliteCandidateStore`).

Shared semantics: an expired item counts as absent, for reads and for the "newer partition wins" rule alike, so
no outcome depends on when a backend physically deletes expired items.

A candidate record is a plain dict (see `engage_assets.candidates.CANDIDATE_FIELDS`):
  customerId, programId, partitionKey, marketplace, subjectId, segment, offerType, score (float, the
  segmenting score), scores {modelId: float}, modelVersions {modelId: str}, offer {..}, holdout (bool),
  channels [str], context {..}, createdAt (ISO-8601 str), expiresAt (int epoch seconds).
"""

from __future__ import annotations

import base64 as _base64
import json as _json
import math as _math
import numbers as _numbers
import struct as _struct
import time as _time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg

Record = dict[str, Any]


@dataclass
class Page:
    items: list[Record]
    next_cursor: str | None = None


@dataclass
class JsonPage:
    """A page as JSON: `items` is the encoded array (`b'[{...},...]'`), spliced from the stored records without a
    decode/re-encode.  Backends that keep records as JSON offer `<query>_json` variants returning it."""

    items: bytes
    next_cursor: str | None = None


@dataclass
class WriteResult:
    written: int = 0
    deleted: int = 0
    skipped_newer: int = 0  # items not overwritten because the store holds a newer partition's candidate
    batches: int = 0
    retries: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class PartitionWrite(ABC):
    """A partition's replacement written in chunks (`CandidateStore.partition_write`): `add` every chunk of records,
    then `commit` once.  The outcome is `replace_partition` with all the chunks' records (re-adding a customer: the
    last record wins); the writer holds one chunk at a time, never the partition.  Without `commit` (an error, or
    `abort`), the store is left as it was on a backend that stages the chunks (SQLite)."""

    @abstractmethod
    def add(self, records: Sequence[Record]) -> None:
        """Stage (or write) one chunk of the partition's records."""

    @abstractmethod
    def commit(self) -> WriteResult:
        """Make the records added the partition's candidates (the partition's other items deleted)."""

    def abort(self) -> None:  # noqa: B027 - nothing to discard unless the backend stages
        """Give up the write (a staging backend discards what was added)."""


class BufferedPartitionWrite(PartitionWrite):
    """The fallback `PartitionWrite`: the chunks kept, then one `replace_partition` (for a backend without a
    chunked write of its own)."""

    def __init__(self, store: CandidateStore, program_id: str, partition_key: str, now: float | None = None):
        self.store, self.program_id, self.partition_key, self.now = store, program_id, partition_key, now
        self.records: list[Record] = []

    def add(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def commit(self) -> WriteResult:
        return self.store.replace_partition(self.program_id, self.partition_key, self.records, now=self.now)


class CandidateStore(dg.ConfigurableResource, ABC):
    """Interface every backend implements; one contract test suite runs against all of them."""

    def partition_write(self, program_id: str, partition_key: str, now: float | None = None) -> PartitionWrite:
        """A chunked `replace_partition`: the batch programs' store stage streams a partition through it, a chunk of
        records at a time.  Backends override it to hold one chunk at a time."""
        return BufferedPartitionWrite(self, program_id, partition_key, now)

    @abstractmethod
    def replace_partition(
        self, program_id: str, partition_key: str, records: Sequence[Record], now: float | None = None
    ) -> WriteResult:
        """Idempotently make `records` the program's candidates for `partition_key`.

        Upserts every record (an item from a *newer* partition of the same customer and program is kept, not
        overwritten); deletes this partition's items that are not in `records`.  Running it twice with the
        same input leaves the same store.
        """

    def replace_partitions(
        self, program_id: str, partitions: Mapping[str, Sequence[Record]], now: float | None = None
    ) -> WriteResult:
        """`replace_partition` for each of many partitions (a reactive batch: one partition per cart), the results
        summed.  A backend that can write them in one transaction overrides this loop."""
        total = WriteResult()
        for key, records in partitions.items():
            r = self.replace_partition(program_id, key, records, now=now)
            total.written += r.written
            total.deleted += r.deleted
            total.skipped_newer += r.skipped_newer
            total.batches += r.batches
            total.retries += r.retries
        return total

    @abstractmethod
    def expired_present(self, program_id: str, before: float) -> int:
        """How many of the program's candidates that expired at or before `before` are still physically stored
        (reads ignore them; the weekly cleanup checks the backend's deletion kept up)."""

    def purge_expired(self, now: float | None = None) -> int:
        """Physically delete expired candidates; how many.  A backend whose TTL sweeper deletes them (DynamoDB)
        deletes nothing here: it returns 0."""
        return 0

    @abstractmethod
    def get(self, customer_id: str, program_id: str, now: float | None = None) -> Record | None: ...

    @abstractmethod
    def query_by_segment(
        self,
        program_id: str,
        segment: str,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
        offer_type: str | None = None,
    ) -> Page:
        """GSI1: live candidates of a segment, highest score first; `offer_type` narrows them (a filter on the
        segment's index partition: the spec's GetCandidatesByImpact with a refundType).  The index queries never
        return holdout candidates (`index_keys`)."""

    @abstractmethod
    def query_by_score(
        self,
        program_id: str,
        offer_type: str,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        """GSI4 (programId#offerType sorted by score): live candidates with an offer type, across segments, highest
        score first (the spec's GetCandidatesByScore).  Items without a score are not in this index."""

    @abstractmethod
    def query_by_offer_type(
        self,
        program_id: str,
        offer_type: str,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        """GSI2: live candidates with an offer type, newest partition first."""

    @abstractmethod
    def query_by_churn_reason(
        self,
        program_id: str,
        churn_reason: str,
        since_date: date | str | None = None,
        min_score: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        now: float | None = None,
    ) -> Page:
        """GSI5 (programId#churnReason by partition date, then score): live candidates whose context names the churn
        reason, newest partition first and highest score first within a partition; `since_date` (YYYY-MM-DD) keeps
        partitions on or after it, `min_score` scores at or above it.  Like every index query, never a holdout
        candidate, and only candidates with a score (`churn_index_key`)."""

    @abstractmethod
    def customer_candidates(self, customer_id: str, now: float | None = None) -> list[Record]: ...

    @abstractmethod
    def delete_customer(self, customer_id: str) -> int: ...

    @abstractmethod
    def count(self, program_id: str, partition_key: str | None = None, now: float | None = None) -> int: ...

    # Score cache: (cache namespace e.g. "modelId@version", entity key) -> score, with a TTL.
    @abstractmethod
    def get_cached_scores(self, namespace: str, keys: Iterable[str], now: float | None = None) -> dict[str, float]: ...

    @abstractmethod
    def put_cached_scores(self, namespace: str, scores: Mapping[str, float], expires_at: int) -> int: ...


# ---------------------------------------------------------------------------------------------------------------
# Shared by the backends: validation, cursors, the clock.  Kept here so every backend enforces the same contract.
# ---------------------------------------------------------------------------------------------------------------
REQUIRED_FIELDS = ("customerId", "programId", "partitionKey", "expiresAt")
"""A record without these cannot be keyed or expired; segment, offerType and score may be None (the item is then
absent from the matching index, as in a sparse DynamoDB GSI)."""


def index_keys(rec: Record, program_id: str) -> tuple[str | None, str | None]:
    """(GSI1 key programId#segment, GSI2/GSI4 key programId#offerType) of a record; None keeps it out of that index.

    A holdout candidate (the control group) is in neither: it is stored (found by customer and by partition, so
    re-runs and erasures reach it, and exported for measurement) but no serving query can hand it to a channel."""
    if rec.get("holdout"):
        return None, None
    segment, offer_type = rec.get("segment"), rec.get("offerType")
    return (
        None if segment is None or rec.get("score") is None else f"{program_id}#{segment}",
        None if offer_type is None else f"{program_id}#{offer_type}",
    )


CHURN_REASON = "churn_reason"
"""The context field GSI5 indexes: the win-back source's `churn_reason` column, copied into the record's context."""


def churn_index_key(rec: Record, program_id: str) -> str | None:
    """GSI5's key programId#churnReason of a record, or None to keep it out of the index: a holdout candidate, one
    without a score, or one whose context has no churn reason (a non-empty string)."""
    context = rec.get("context")
    reason = context.get(CHURN_REASON) if isinstance(context, Mapping) else None
    if rec.get("holdout") or rec.get("score") is None or not isinstance(reason, str) or not reason:
        return None
    return f"{program_id}#{reason}"


def churn_scope(program_id: str, churn_reason: str) -> str:
    """The GSI5 key a churn-reason query reads (cursors are bound to it); an empty reason is a ValueError."""
    if not isinstance(churn_reason, str) or not churn_reason:
        raise ValueError("churn_reason must be a non-empty string")
    return f"{program_id}#{churn_reason}"


def sortable_score(score: float) -> str:
    """A finite score as 16 hex digits that sort as the numbers do (IEEE-754 bits, sign flipped; negatives' bits
    inverted): a string sort key can order by score after the partition date."""
    bits = _struct.unpack(">Q", _struct.pack(">d", float(score) + 0.0))[0]  # + 0.0: -0.0 sorts as 0.0
    return f"{bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63:016x}"


def since_key(since_date: date | str | None) -> str | None:
    """`since_date` as the YYYY-MM-DD a partition key is compared with; a malformed date is a ValueError."""
    if since_date is None or isinstance(since_date, date):
        return None if since_date is None else since_date.isoformat()[:10]
    try:
        if not isinstance(since_date, str) or len(since_date) != 10:
            raise ValueError
        return date.fromisoformat(since_date).isoformat()
    except ValueError:
        raise ValueError("since_date must be a date, YYYY-MM-DD") from None


class CandidateStoreError(RuntimeError):
    """Base of the store's own failures (as opposed to a caller's bad input, which raises ValueError)."""


class CandidateStoreWriteError(CandidateStoreError):
    """A write could not be completed after the bounded retries; re-running the partition is safe (idempotent)."""


def resolve_now(now: float | None) -> float:
    """`now` is injectable so tests (and backfills that reason about 'as of') can pin the clock."""
    return _time.time() if now is None else float(now)


def validate_records(program_id: str, partition_key: str, records: Sequence[Record]) -> tuple[list[Record], int]:
    """Check every record belongs to (program_id, partition_key) and can be keyed; drop duplicate customers.

    Duplicates (same customerId twice in one partition) would be rejected by DynamoDB's BatchWriteItem and are
    ambiguous anyway: the last one wins, as a sequence of upserts would decide, and the number dropped is
    returned so the caller can surface it.  Errors name the record's position, never its customer (no PII).
    """
    if not program_id or "#" in program_id:
        raise ValueError(f"program_id must be non-empty and contain no '#': {program_id!r}")
    if not partition_key or "#" in partition_key:
        raise ValueError(f"partition_key must be non-empty and contain no '#': {partition_key!r}")
    by_customer: dict[str, Record] = {}
    for i, rec in enumerate(records):
        # Fast path: exact type checks cost ~1 us per record, which matters at 25,000 records a partition.
        customer_id = rec.get("customerId")
        expires_at = rec.get("expiresAt")
        score = rec.get("score")
        if (
            type(customer_id) is not str
            or not customer_id
            or rec.get("programId") != program_id
            or rec.get("partitionKey") != partition_key
            or type(expires_at) is not int
            or not (score is None or (type(score) is float and _math.isfinite(score)) or type(score) is int)
        ):
            _check_slowly(i, rec, program_id, partition_key)
        by_customer[str(customer_id)] = rec
    return list(by_customer.values()), len(records) - len(by_customer)


def _check_slowly(i: int, rec: Record, program_id: str, partition_key: str) -> None:
    """Accept what the fast path's exact types missed (numpy scalars from pandas), else say precisely what is wrong
    with record #i: its position, never its customer (no PII in errors or logs)."""
    missing = [f for f in REQUIRED_FIELDS if rec.get(f) in (None, "")]
    if missing:
        raise ValueError(f"candidate record #{i} lacks required field(s) {missing}")
    if rec["programId"] != program_id:
        raise ValueError(f"candidate record #{i} has programId {rec['programId']!r}, expected {program_id!r}")
    if rec["partitionKey"] != partition_key:
        raise ValueError(f"candidate record #{i} has partitionKey {rec['partitionKey']!r}, expected {partition_key!r}")
    if not isinstance(rec["customerId"], str):
        raise ValueError(f"candidate record #{i}: customerId must be a string")
    if isinstance(rec["expiresAt"], bool) or not isinstance(rec["expiresAt"], _numbers.Integral):
        raise ValueError(f"candidate record #{i}: expiresAt must be int epoch seconds")
    score = rec.get("score")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, _numbers.Real) or not _math.isfinite(score)
    ):
        raise ValueError(f"candidate record #{i}: score must be a finite number or None")


def encode_cursor(kind: str, scope: str, position: Any) -> str:
    """Opaque, URL-safe cursor: the keyset position after the last item returned, bound to the query it came from."""
    raw = _json.dumps({"k": kind, "s": scope, "p": position}, separators=(",", ":")).encode()
    return _base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, scope: str) -> Any:
    """Inverse of `encode_cursor`; a cursor of another query (or garbage) is the caller's error, not an empty page."""
    try:
        raw = _base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        obj = _json.loads(raw)
        ok = isinstance(obj, dict) and obj.get("k") == kind and obj.get("s") == scope and "p" in obj
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ValueError("invalid cursor for this query")
    return obj["p"]
