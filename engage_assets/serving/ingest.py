"""Event ingest: PutEvents entries → the EventBridge envelopes a target receives → one `EventSource.send` batch.
`POST /v1/events` (`engage_assets.serving.routes.events`) and `engage events put` (`engage_assets.cli.events`) share it.

Checked here, at ingest; what fails is answered per entry and never enqueued:
- the request's limits (`validate_put_events`: 1-10 entries, 256 KiB in all, counted as EventBridge counts): the
  whole request fails (`PutEventsRequestError`, a 400 on the API);
- each entry's fields and its `Detail` (JSON text holding an object), as EventBridge checks them: `InvalidArgument`,
  `MalformedDetail`;
- the event itself: `parse_envelope` on the envelope, what `parse_event` checks (a known detail-type; the detail's
  required fields, their strict types and values): `InvalidArgument`, its message naming the reason code and the
  field, never a value;
- the envelope's size against the queue's message limit (256 KiB): `InvalidArgument`.
An entry the queue refuses (`SendResult.error`) is `InternalFailure`: retry it.

Left to the consumer (the reactive programs' sensor): matching the programs' event patterns (an event no program
wants is enqueued all the same), duplicates (delivery is at least once: a retried request enqueues again), order,
and every check that needs state (the customer, consent, a cart already bought).  The consumer must still parse
every message and quarantine what fails: in production, producers reach the queue through EventBridge, not here.

`EventBusName` is accepted and not routed: each environment has one queue (`resources.by_env.event_source`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engage_assets.domain.events import CheckedEntry, PutEventsEntry, Rejected, check_put_events, parse_envelope
from resources.events.base import EventSource

ACCOUNT = "000000000000"  # the envelope's `account`: no AWS account stands behind this path
REGION = "local"
MAX_MESSAGE_BYTES = 262_144  # SQS's largest message body; the local queue keeps the same limit

Entry = Mapping[str, Any] | PutEventsEntry


def failure(code: str, message: str) -> dict[str, str]:
    """A failed entry's result in the PutEvents response."""
    return {"ErrorCode": code, "ErrorMessage": message}


@dataclass
class Prepared:
    """A checked request: one PutEvents result per entry, in order, and the envelopes (JSON) of those to enqueue."""

    results: list[dict[str, str]]
    bodies: list[tuple[int, str]] = field(default_factory=list)  # (entry index, envelope JSON)

    def response(self) -> dict[str, Any]:
        """The PutEvents response body: `FailedEntryCount` and `Entries`."""
        return {"FailedEntryCount": sum("ErrorCode" in r for r in self.results), "Entries": self.results}


def envelope_body(
    entry: Entry | CheckedEntry, event_id: str, received_at: datetime, account: str, region: str
) -> str | Rejected:
    """The envelope EventBridge would deliver for an entry it accepted, as JSON text, or why the event is refused.
    A `CheckedEntry` (what `check_put_events` accepted) is not validated nor its `Detail` read a second time."""
    detail: dict[str, Any] | None = None
    brackets: int | None = None
    if isinstance(entry, CheckedEntry):
        if entry.entry is None:
            raise ValueError("the entry was refused: it has no envelope")
        checked, detail, brackets = entry.entry, entry.detail, entry.brackets
    else:
        checked = entry if isinstance(entry, PutEventsEntry) else PutEventsEntry.model_validate(dict(entry))
    try:
        envelope = checked.to_envelope(
            event_id=event_id, account=account, region=region, received_at=received_at, detail=detail
        )
    except ValueError:
        return Rejected("malformed_json", "Detail is malformed")
    parsed = parse_envelope(envelope, brackets)  # as parse_event(envelope.model_dump_json()), without the round trip
    if isinstance(parsed, Rejected):
        return parsed
    body = parsed.to_json()
    size = len(body.encode())
    if size > MAX_MESSAGE_BYTES:
        return Rejected("too_large", f"the event has {size} bytes as delivered, more than {MAX_MESSAGE_BYTES}")
    return body


def prepare(
    entries: Sequence[Entry], received_at: datetime, *, account: str = ACCOUNT, region: str = REGION
) -> Prepared:
    """Check a PutEvents request (`PutEventsRequestError` when it breaks a limit) and build the envelopes of the
    entries that pass; `received_at` is the `time` of an entry without `Time`."""
    prepared = Prepared(results=[])
    for i, checked in enumerate(check_put_events(entries)):
        event_id = checked.result.EventId
        if event_id is None:
            prepared.results.append(checked.result.model_dump(exclude_none=True))
            continue
        body = envelope_body(checked, event_id, received_at, account, region)
        if isinstance(body, Rejected):
            prepared.results.append(failure("InvalidArgument", f"Event rejected ({body.reason}): {body.detail}."))
            continue
        prepared.results.append({"EventId": event_id})
        prepared.bodies.append((i, body))
    return prepared


def enqueue(source: EventSource, prepared: Prepared) -> dict[str, Any]:
    """Send the prepared envelopes in one `send` call; returns the PutEvents response, an entry the queue refused
    marked `InternalFailure`.  The source's own errors (unreachable, locked) propagate."""
    if prepared.bodies:
        sent = source.send([body for _, body in prepared.bodies])
        for (i, _), outcome in zip(prepared.bodies, sent, strict=True):
            if not outcome.ok:
                prepared.results[i] = failure(
                    "InternalFailure", f"The event queue refused the event ({outcome.error})."
                )
    return prepared.response()


def put_events(source: EventSource, entries: Sequence[Entry], received_at: datetime, **names: str) -> dict[str, Any]:
    """`prepare` then `enqueue`: one PutEvents request into the source (`names`: `account`, `region`)."""
    return enqueue(source, prepare(entries, received_at, **names))
