"""The platform's own history: the offers it made and the contacts it sent, as the tables it writes for the
warehouse to read back (dbt's `platform` source → `marts.offer_history`, `marts.contact_history`), so the filters'
look-backs, the frequency caps and `win_back_attempts` count what the platform itself did.

- An **offer** is a stored candidate that was not held out: one row per candidate, written with the partition's
  candidates (`stored_candidates`), dated the partition's as-of date (the day the run makes it; the source stage
  counts history strictly before its own as-of date, so a re-run of the same partition never sees its own offers,
  and the next partition sees them 1 day back).  A held-out customer was offered nothing and is not in it.
- An **assignment** is any stored candidate, the holdout included (`holdout` true): written beside the offers, so
  the control group exists for lift (`stg_platform_assignments`); dated the partition's as-of date.
- A **contact** is a touch the delivery ledger records as `sent`: one row per touch, dated its send time, with the
  provider's message id (what outcome webhooks name).  A contact whose candidate wrote no offer row (the reactive
  programs store their candidates on the event path) still counts as that candidate's offer in the mart.

`offer_id` is `<programId>|<partitionKey>|<subjectId>` for both, so a contact finds its offer.  No PII: customer ids,
codes and amounts only, never an address.  Files are one per program and partition (contacts: per program and day),
so a re-run replaces them.  Timestamps are UTC, written without a zone (what the warehouse's `loaded_at` columns
hold).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

OFFERS, CONTACTS, ASSIGNMENTS = "offers", "contacts", "assignments"

OFFER_SCHEMA = pa.schema(
    [
        ("offer_id", pa.string()),
        ("customer_id", pa.string()),
        ("program_id", pa.string()),
        ("partition_key", pa.string()),
        ("subject_id", pa.string()),
        ("segment", pa.string()),
        ("offer_type", pa.string()),
        ("offer_date", pa.date32()),
        ("order_id", pa.string()),
        ("amount_usd", pa.float64()),
        ("loaded_at", pa.timestamp("us")),
    ]
)

# Every stored candidate, the holdout included (`holdout` true: the control group lift is measured against).
ASSIGNMENT_SCHEMA = pa.schema(
    [
        ("offer_id", pa.string()),
        ("customer_id", pa.string()),
        ("program_id", pa.string()),
        ("partition_key", pa.string()),
        ("subject_id", pa.string()),
        ("segment", pa.string()),
        ("offer_type", pa.string()),
        ("holdout", pa.bool_()),
        ("amount_usd", pa.float64()),
        ("assigned_date", pa.date32()),
        ("loaded_at", pa.timestamp("us")),
    ]
)

CONTACT_SCHEMA = pa.schema(
    [
        ("touch_ref", pa.string()),
        ("offer_id", pa.string()),
        ("customer_id", pa.string()),
        ("program_id", pa.string()),
        ("partition_key", pa.string()),
        ("subject_id", pa.string()),
        ("touch_id", pa.string()),
        ("channel", pa.string()),
        ("channel_id", pa.string()),
        ("template_id", pa.string()),
        ("segment", pa.string()),
        ("offer_type", pa.string()),
        ("amount_usd", pa.float64()),
        ("provider_id", pa.string()),
        ("sent_at", pa.timestamp("us")),
        ("contact_date", pa.date32()),
        ("loaded_at", pa.timestamp("us")),
    ]
)


def history_name(kind: str, group: str) -> str:
    """The name a program's offers or contacts are written under (`offers_<group>`, `contacts_<group>`)."""
    if kind not in (OFFERS, CONTACTS, ASSIGNMENTS):
        raise ValueError(f"history kind must be {OFFERS!r}, {CONTACTS!r} or {ASSIGNMENTS!r}, got {kind!r}")
    return f"{kind}_{group}"


def offer_id(program_id: str, partition_key: str, subject_id: str) -> str:
    """One offer: a program's candidate of one partition."""
    return f"{program_id}|{partition_key}|{subject_id}"


def _utc(moment: datetime) -> datetime:
    """A moment as a naive UTC datetime (a naive one is taken to be UTC already)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _strings(table: pa.Table, name: str) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    return pc.cast(table.column(name), pa.string()).combine_chunks()


def offer_rows(
    program_id: str, subject_column: str, offers: pa.Table, partition_key: str, offer_date: date, loaded_at: datetime
) -> pa.Table:
    """The offers of one partition's offers-stage table (columns `customer_id`, the subject column, `segment`,
    `offer_type`, `offer_value_usd`, `holdout`; `order_id` when the program has orders): held-out rows left out."""
    if "holdout" in offers.column_names and offers.num_rows:
        offers = offers.filter(pc.invert(pc.fill_null(offers.column("holdout"), False)))
    n = offers.num_rows
    subjects = _strings(offers, subject_column)
    ids = [offer_id(program_id, partition_key, s) for s in subjects.to_pylist()]
    amounts = offers.column("offer_value_usd") if "offer_value_usd" in offers.column_names else pa.nulls(n)
    columns = {
        "offer_id": pa.array(ids, pa.string()),
        "customer_id": _strings(offers, "customer_id"),
        "program_id": pa.array([program_id] * n, pa.string()),
        "partition_key": pa.array([partition_key] * n, pa.string()),
        "subject_id": subjects,
        "segment": _strings(offers, "segment"),
        "offer_type": _strings(offers, "offer_type"),
        "offer_date": pa.array([offer_date] * n, pa.date32()),
        "order_id": _strings(offers, "order_id"),
        "amount_usd": pc.cast(amounts, pa.float64()),
        "loaded_at": pa.array([_utc(loaded_at)] * n, pa.timestamp("us")),
    }
    return pa.table(columns, schema=OFFER_SCHEMA)


def assignment_rows(
    program_id: str, subject_column: str, offers: pa.Table, partition_key: str, assigned: date, loaded_at: datetime
) -> pa.Table:
    """Every candidate of one partition's offers-stage table, the held-out ones included (`holdout` true; a table
    without the column has none); `amount_usd` is the offer's value, 0 for none."""
    n = offers.num_rows
    subjects = _strings(offers, subject_column)
    holdout = (
        pc.fill_null(pc.cast(offers.column("holdout"), pa.bool_()), False)
        if "holdout" in offers.column_names
        else pa.array([False] * n, pa.bool_())
    )
    amounts = offers.column("offer_value_usd") if "offer_value_usd" in offers.column_names else pa.nulls(n)
    columns = {
        "offer_id": pa.array([offer_id(program_id, partition_key, s) for s in subjects.to_pylist()], pa.string()),
        "customer_id": _strings(offers, "customer_id"),
        "program_id": pa.array([program_id] * n, pa.string()),
        "partition_key": pa.array([partition_key] * n, pa.string()),
        "subject_id": subjects,
        "segment": _strings(offers, "segment"),
        "offer_type": _strings(offers, "offer_type"),
        "holdout": holdout,
        "amount_usd": pc.fill_null(pc.cast(amounts, pa.float64()), 0.0),
        "assigned_date": pa.array([assigned] * n, pa.date32()),
        "loaded_at": pa.array([_utc(loaded_at)] * n, pa.timestamp("us")),
    }
    return pa.table(columns, schema=ASSIGNMENT_SCHEMA)


def assignments_of_records(records: Sequence[Mapping[str, Any]], loaded_at: datetime) -> pa.Table:
    """The assignments of stored candidate records (`pipeline.candidate_records`' shape; the reactive programs'),
    the holdout included, each dated the day it was decided (`createdAt`)."""
    rows = [
        {
            "offer_id": offer_id(r["programId"], r["partitionKey"], str(r["subjectId"])),
            "customer_id": str(r["customerId"]),
            "program_id": r["programId"],
            "partition_key": r["partitionKey"],
            "subject_id": str(r["subjectId"]),
            "segment": r.get("segment"),
            "offer_type": r.get("offerType"),
            "holdout": bool(r.get("holdout")),
            "amount_usd": _offer_value(r.get("offer")) or 0.0,
            "assigned_date": datetime.fromisoformat(r["createdAt"]).date(),
            "loaded_at": _utc(loaded_at),
        }
        for r in records
    ]
    return pa.Table.from_pylist(rows, schema=ASSIGNMENT_SCHEMA)


def _offer_value(offer: Any) -> float | None:
    """`valueUsd` of a touch's offer (JSON text or a mapping), when it has one."""
    if isinstance(offer, str):
        try:
            offer = json.loads(offer)
        except ValueError:
            return None
    value = offer.get("valueUsd") if isinstance(offer, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else None


def contact_rows(touches: Sequence[Mapping[str, Any]], loaded_at: datetime) -> pa.Table:
    """The contacts of sent touches, each a plan row (`LedgerRow.touch_dict()`) with `touchRef` (the touch's
    provider-facing idempotency key), `sentAt` (epoch seconds) and `providerId` added."""
    rows = []
    for t in touches:
        sent = datetime.fromtimestamp(int(t["sentAt"]), UTC).replace(tzinfo=None)
        rows.append(
            {
                "touch_ref": t["touchRef"],
                "offer_id": offer_id(t["programId"], t["partitionKey"], t["subjectId"]),
                "customer_id": t["customerId"],
                "program_id": t["programId"],
                "partition_key": t["partitionKey"],
                "subject_id": t["subjectId"],
                "touch_id": t["touchId"],
                "channel": t["channel"],
                "channel_id": t["channelId"],
                "template_id": t.get("templateId"),
                "segment": t.get("segment"),
                "offer_type": t.get("offerType"),
                "amount_usd": _offer_value(t.get("offer")),
                "provider_id": t.get("providerId"),
                "sent_at": sent,
                "contact_date": sent.date(),
                "loaded_at": _utc(loaded_at),
            }
        )
    return pa.Table.from_pylist(rows, schema=CONTACT_SCHEMA)
