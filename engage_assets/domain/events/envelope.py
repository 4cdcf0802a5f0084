"""The event shapes: the EventBridge envelope a target receives, the PutEvents entry a producer sends, and the cart
event details the abandoned-cart program reads.

`parse_event` turns raw input (bytes, text or a mapping) into a `ParsedEvent` or a `Rejected` — it never raises on
bad input.  A rejection carries a short `reason` code and a `detail` that names the field and the kind of error,
never a value from the payload (events carry customer ids and e-mail addresses).  Reason codes: `not_json`,
`malformed_json`, `too_large`, `too_deep`, `not_an_object`, `missing_field`, `wrong_type`, `invalid_value`,
`unknown_detail_type`.  Types are strict: "150" is not a cart value, 1 is not `true`, a timestamp is an ISO 8601
string with a zone.  Fields a detail model does not know are kept in the envelope's `detail` and ignored by the model.

`validate_put_events` applies PutEvents' limits (1-10 entries, 256 KiB in all, counted as EventBridge counts an
entry) and answers per entry in the PutEvents response shape (`EventId`, or `ErrorCode` + `ErrorMessage`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticCustomError, PydanticSerializationError

from engage_assets.domain.events.json_text import MAX_DEPTH, loads, nesting_bound, nesting_depth

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
TIME_ENTRY_BYTES = 14  # EventBridge counts a set `Time` as 14 bytes
# A delivered envelope is an entry (≤ 256 KiB) plus EventBridge's keys and ids; anything far larger is not an event.
MAX_EVENT_BYTES = MAX_REQUEST_BYTES + 8 * 1024


def _timestamp_text(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise PydanticCustomError("datetime_type", "Input should be an ISO 8601 timestamp string")
    return value


Text = Annotated[str, Strict()]
Id = Annotated[str, Strict(), StringConstraints(min_length=1)]
Amount = Annotated[float, Strict(), Field(ge=0)]
Count = Annotated[int, Strict(), Field(ge=0)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp_text)]
Currency = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Z]{3}$")]


class EventModel(BaseModel):
    """Base of the event shapes: immutable; unknown fields are ignored (producers may add fields)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class EventEnvelope(EventModel):
    """An EventBridge event as delivered to a target (and as the local queue carries it)."""

    version: Text
    id: Id
    detail_type: Id = Field(alias="detail-type")
    source: Id
    account: Text
    time: Timestamp
    region: Text
    resources: list[Text]
    detail: dict[str, Any]


class CartItem(EventModel):
    """One line of an abandoned cart."""

    id: Id
    name: Text
    price: Amount
    quantity: Annotated[int, Strict(), Field(ge=1)] = 1
    inStock: Annotated[bool, Strict()] | None = None


class CartAbandoned(EventModel):
    """`detail` of a CartAbandoned event: the cart a customer left (spec: Reactive Data Flow, T+0ms)."""

    customerId: Id
    cartId: Id
    cartValue: Amount
    currency: Currency = "USD"
    itemCount: Count
    items: list[CartItem]
    abandonmentReason: Text | None = None
    timestamp: Timestamp


class CartPurchased(EventModel):
    """`detail` of a CartPurchased event: the cart became an order (recovery converted, later touches stop)."""

    customerId: Id
    cartId: Id
    orderId: Id
    value: Amount
    timestamp: Timestamp


class InventoryChanged(EventModel):
    """`detail` of an InventoryChanged event: a product went in or out of stock."""

    productId: Id
    inStock: Annotated[bool, Strict()]
    timestamp: Timestamp


CartDetail = CartAbandoned | CartPurchased | InventoryChanged
DETAIL_MODELS: dict[str, type[CartAbandoned] | type[CartPurchased] | type[InventoryChanged]] = {
    "CartAbandoned": CartAbandoned,
    "CartPurchased": CartPurchased,
    "InventoryChanged": InventoryChanged,
}


@dataclass(frozen=True)
class ParsedEvent:
    """An accepted event: its envelope (with `detail` as sent) and the typed detail."""

    envelope: EventEnvelope
    detail: CartDetail

    @property
    def detail_type(self) -> str:
        """The envelope's `detail-type`."""
        return self.envelope.detail_type

    def as_event(self) -> dict[str, Any]:
        """The envelope as a JSON-compatible mapping with EventBridge's keys: what an event pattern matches."""
        return self.envelope.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        """The envelope as compact JSON text (UTF-8 characters as they are); `parse_event(e.to_json()) == e`.
        Serialised by pydantic-core; text it cannot encode as UTF-8 (a lone surrogate) goes through `json.dumps`."""
        try:
            return self.envelope.model_dump_json(by_alias=True)
        except PydanticSerializationError:
            return json.dumps(self.as_event(), separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Rejected:
    """An event that could not be accepted: a short `reason` code and a `detail` free of payload values."""

    reason: str
    detail: str


def _load(raw: Any) -> tuple[Any, int] | Rejected:
    """The raw input as JSON values with its `nesting_bound` count, or a `Rejected`."""
    if isinstance(raw, Mapping):
        try:
            raw = json.dumps(dict(raw), allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return Rejected("not_json", "the mapping holds values JSON cannot carry")
    elif isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    if isinstance(raw, str):
        size = len(raw.encode("utf-8", "surrogatepass"))
    elif isinstance(raw, bytes):
        size = len(raw)
    else:
        return Rejected("not_json", f"expected JSON bytes, text or a mapping, got {type(raw).__name__}")
    if size > MAX_EVENT_BYTES:
        return Rejected("too_large", f"the event has {size} bytes, more than {MAX_EVENT_BYTES}")
    try:
        return loads(raw), nesting_bound(raw)
    except json.JSONDecodeError as exc:
        return Rejected("malformed_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except (UnicodeError, ValueError, RecursionError):
        return Rejected("malformed_json", "the event is not JSON text")


def _rejection(exc: ValidationError, prefix: str = "") -> Rejected:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    where = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "") or "the event"
    kind = first["type"]
    if kind == "missing":
        reason = "missing_field"
    elif kind.endswith("_type"):
        reason = "wrong_type"
    else:
        reason = "invalid_value"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return Rejected(reason, f"{where}: {kind}{more}")


def parse_event(raw: bytes | str | Mapping[str, Any]) -> ParsedEvent | Rejected:
    """Parse one delivered event (the envelope, JSON bytes/text or a mapping).  Never raises on bad input: a
    malformed, incomplete, mistyped or unknown event comes back as `Rejected` (see the module docstring)."""
    read = _load(raw)
    if isinstance(read, Rejected):
        return read
    loaded, brackets = read
    if not isinstance(loaded, dict):
        return Rejected("not_an_object", f"the event is a JSON {type(loaded).__name__}, not an object")
    if brackets > MAX_DEPTH and nesting_depth(loaded) > MAX_DEPTH:  # fewer brackets than that cannot nest deeper
        return Rejected("too_deep", f"the event nests deeper than {MAX_DEPTH} levels")
    try:
        envelope = EventEnvelope.model_validate(loaded)
    except ValidationError as exc:
        return _rejection(exc)
    return _typed(envelope)


def parse_envelope(envelope: EventEnvelope, detail_brackets: int | None = None) -> ParsedEvent | Rejected:
    """`parse_event` of an envelope already validated (the ingest path builds one from a PutEvents entry): the
    detail's depth and type checked as `parse_event(envelope.model_dump_json(by_alias=True))` would, without the
    round trip through JSON text.  `detail_brackets`: the `nesting_bound` count of the detail's text, when known (a
    detail with fewer than `MAX_DEPTH` cannot be too deep, and its depth is not walked)."""
    shallow = detail_brackets is not None and detail_brackets + 1 <= MAX_DEPTH
    if not shallow and nesting_depth(envelope.detail) + 1 > MAX_DEPTH:  # the envelope is the first level
        return Rejected("too_deep", f"the event nests deeper than {MAX_DEPTH} levels")
    return _typed(envelope)


def _typed(envelope: EventEnvelope) -> ParsedEvent | Rejected:
    """The envelope with its typed detail, or why the detail is refused."""
    model = DETAIL_MODELS.get(envelope.detail_type)
    if model is None:
        return Rejected("unknown_detail_type", f"detail-type is not one of {', '.join(DETAIL_MODELS)}")
    try:
        detail = model.model_validate(envelope.detail)
    except ValidationError as exc:
        return _rejection(exc, "detail")
    return ParsedEvent(envelope, detail)


class PutEventsEntry(BaseModel):
    """One entry of a PutEvents request (`PutEventsRequestEntry`): what a producer sends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    Source: Id
    DetailType: Id
    Detail: Id = Field(description="The detail, as JSON text holding an object")
    EventBusName: Text | None = None
    # Text only, as the OpenAPI schema says: pydantic would also read a number as epoch seconds (or milliseconds
    # above 2e10), an ambiguity a producer should not rely on.
    Time: Annotated[datetime, BeforeValidator(_timestamp_text)] | None = None
    Resources: list[Text] = []
    TraceHeader: Text | None = None

    def size(self) -> int:
        """The entry's size as EventBridge counts it against the 256 KiB request limit."""
        return entry_size(self.model_dump(exclude_none=True))

    def to_envelope(
        self, *, event_id: str, account: str, region: str, received_at: datetime, detail: Any = None
    ) -> EventEnvelope:
        """The event EventBridge delivers for this entry (`time` is the entry's `Time`, else `received_at`;
        `detail`: `Detail` already read, else it is read here).  ValueError when `Detail` is not a JSON object."""
        if detail is None:
            try:
                detail = loads(self.Detail)
            except (ValueError, RecursionError):
                detail = None
        if not isinstance(detail, dict):
            raise ValueError("Detail is malformed.")
        time = self.Time or received_at
        return EventEnvelope(
            version="0",
            id=event_id,
            detail_type=self.DetailType,
            source=self.Source,
            account=account,
            time=time if time.tzinfo else time.replace(tzinfo=UTC),
            region=region,
            resources=list(self.Resources),
            detail=detail,
        )


class PutEventsResultEntry(BaseModel):
    """One entry of a PutEvents response: `EventId` on success, else `ErrorCode` and `ErrorMessage`."""

    model_config = ConfigDict(frozen=True)

    EventId: str | None = None
    ErrorCode: Literal["InvalidArgument", "MalformedDetail"] | None = None
    ErrorMessage: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the entry was accepted."""
        return self.EventId is not None


class PutEventsRequestError(ValueError):
    """The whole PutEvents request fails (EventBridge's `ValidationException`): no entry is accepted."""

    code = "ValidationException"


def _utf8(value: Any) -> int:
    return len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else 0


def entry_size(entry: Mapping[str, Any] | PutEventsEntry) -> int:
    """An entry's size as EventBridge counts it: Time 14 bytes if set, plus the UTF-8 bytes of Source,
    DetailType, Detail and each of Resources (fields of the wrong type count nothing)."""
    fields = entry.model_dump(exclude_none=True) if isinstance(entry, PutEventsEntry) else entry
    size = TIME_ENTRY_BYTES if fields.get("Time") is not None else 0
    size += sum(_utf8(fields.get(name)) for name in ("Source", "DetailType", "Detail"))
    resources = fields.get("Resources")
    if isinstance(resources, list):
        size += sum(_utf8(r) for r in resources)
    return size


@dataclass(frozen=True)
class CheckedEntry:
    """One entry of a checked PutEvents request: its result and, when accepted, the validated entry and its
    `Detail` as JSON values (with its `nesting_bound` count), so the envelope is built without reading them again."""

    result: PutEventsResultEntry
    entry: PutEventsEntry | None = None
    detail: dict[str, Any] | None = None
    brackets: int = 0


def _check_entry(entry: Mapping[str, Any] | PutEventsEntry) -> PutEventsResultEntry | CheckedEntry:
    """The entry's error, or the entry as EventBridge would accept it (its result still to be given an id)."""
    fields = entry.model_dump() if isinstance(entry, PutEventsEntry) else entry
    for name in ("Source", "DetailType", "Detail"):
        if not fields.get(name):
            message = f"Parameter {name} is not valid. Reason: {name} is a required argument."
            return PutEventsResultEntry(ErrorCode="InvalidArgument", ErrorMessage=message)
    try:
        checked = entry if isinstance(entry, PutEventsEntry) else PutEventsEntry.model_validate(dict(entry))
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        name = ".".join(map(str, error["loc"]))
        message = f"Parameter {name} is not valid. Reason: {error['type']}."
        return PutEventsResultEntry(ErrorCode="InvalidArgument", ErrorMessage=message)
    try:
        detail = loads(checked.Detail)
    except (ValueError, RecursionError):
        detail = None
    if not isinstance(detail, dict):
        return PutEventsResultEntry(ErrorCode="MalformedDetail", ErrorMessage="Detail is malformed.")
    return CheckedEntry(PutEventsResultEntry(), checked, detail, nesting_bound(checked.Detail))


def _new_event_id() -> str:
    return str(uuid.uuid4())


def check_put_events(
    entries: Sequence[Mapping[str, Any] | PutEventsEntry], *, new_event_id: Callable[[], str] = _new_event_id
) -> list[CheckedEntry]:
    """`validate_put_events`, each result with the validated entry and its detail when accepted."""
    if not entries:
        raise PutEventsRequestError("Entries must have length greater than or equal to 1")
    if len(entries) > MAX_ENTRIES:
        raise PutEventsRequestError(f"Entries must have length less than or equal to {MAX_ENTRIES}")
    total = sum(entry_size(e) for e in entries)
    if total > MAX_REQUEST_BYTES:
        raise PutEventsRequestError(f"Total size of the entries in the request is over the limit ({total} bytes)")
    out: list[CheckedEntry] = []
    for e in entries:
        checked = _check_entry(e)
        if isinstance(checked, PutEventsResultEntry):
            out.append(CheckedEntry(checked))
        else:
            accepted = PutEventsResultEntry.model_construct(EventId=new_event_id(), ErrorCode=None, ErrorMessage=None)
            out.append(CheckedEntry(accepted, checked.entry, checked.detail, checked.brackets))
    return out


def validate_put_events(
    entries: Sequence[Mapping[str, Any] | PutEventsEntry], *, new_event_id: Callable[[], str] = _new_event_id
) -> list[PutEventsResultEntry]:
    """Check a PutEvents request as EventBridge does: `PutEventsRequestError` when the request as a whole breaks a
    limit (no entries, more than 10, more than 256 KiB in all); otherwise one result per entry, in order."""
    return [c.result for c in check_put_events(entries, new_event_id=new_event_id)]


def put_events_response(results: Sequence[PutEventsResultEntry]) -> dict[str, Any]:
    """The PutEvents response body: `FailedEntryCount` and `Entries` (each without empty keys)."""
    return {
        "FailedEntryCount": sum(not r.ok for r in results),
        "Entries": [r.model_dump(exclude_none=True) for r in results],
    }
