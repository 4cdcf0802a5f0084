"""Request and response models of the serving API: they are its OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from engage_assets.domain.events import PutEventsEntry
from engage_assets.domain.events.envelope import MAX_ENTRIES, MAX_REQUEST_BYTES
from engage_assets.serving.auth import SCOPE_PATTERN

PROGRAM_PATTERN = r"^[a-z][a-z0-9-]{0,63}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # segment names, offer/refund types
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"  # customer, message and task ids
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,2048}$"


def _not_a_boolean(value: object) -> object:
    """JSON `true` is not a number (pydantic's lax mode would read it as 1); `31753.0` still is an integer."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


WholeNumber = Annotated[int, BeforeValidator(_not_a_boolean)]
RealNumber = Annotated[float, BeforeValidator(_not_a_boolean)]


class Candidate(BaseModel):
    """A stored candidate (ARCHITECTURE §5).  Holdout candidates (a program's control group: stored and measured,
    never contacted) are never served, so `holdout` is always false here."""

    model_config = ConfigDict(extra="allow")

    customerId: str
    programId: str
    partitionKey: str
    marketplace: str | None = None
    subjectId: str | None = None
    segment: str | None = None
    offerType: str | None = None
    score: float | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    modelVersions: dict[str, str] = Field(default_factory=dict)
    offer: dict[str, Any] = Field(default_factory=dict)
    holdout: bool = False
    channels: list[str] = Field(default_factory=list)
    context: dict[str, Any] = Field(default_factory=dict)
    createdAt: str | None = None
    expiresAt: int


class CandidatePage(BaseModel):
    items: list[Candidate]
    nextCursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")


class CustomerCandidates(BaseModel):
    customerId: str
    items: list[Candidate]


class InboxMessage(BaseModel):
    messageId: str
    customerId: str
    programId: str
    messageType: str
    templateId: str
    offer: dict[str, Any]
    score: float | None = None
    displayFrom: int
    displayUntil: int
    state: Literal["active", "seen", "dismissed"]
    updatedAt: int | None = None


class Inbox(BaseModel):
    customerId: str
    items: list[InboxMessage]


class CallTask(BaseModel):
    taskId: str
    customerId: str
    programId: str
    segment: str | None = None
    scriptId: str | None = None
    callType: str | None = None
    score: float | None = None
    offer: dict[str, Any]
    dueAt: int
    priority: int
    state: Literal["open", "claimed", "completed"]
    claimedBy: str | None = None
    claimExpiresAt: int | None = None
    outcome: Literal["accepted", "declined", "no_answer", "callback"] | None = None
    completedAt: int | None = None
    assignedTo: str | None = Field(None, description="The account manager the task is assigned to (only they claim).")
    assignedAt: int | None = None


class CallTaskPage(BaseModel):
    items: list[CallTask]
    nextCursor: str | None = None


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    claimSeconds: WholeNumber = Field(
        900, ge=60, le=8 * 3600, description="How long the claim holds before it expires."
    )


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["accepted", "declined", "no_answer", "callback"]


class Deletion(BaseModel):
    customerId: str
    candidates: int
    inboxMessages: int
    callTasks: int
    other: dict[str, int] = Field(default_factory=dict, description="Counts from other registered erasers.")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=LABEL_PATTERN)
    scopes: list[Annotated[str, Field(pattern=SCOPE_PATTERN)]] = Field(
        min_length=1, max_length=16, description="read:<programId>, read:*, agent, inapp, admin, ingest"
    )
    ratePerSecond: RealNumber = Field(50.0, gt=0, le=100_000)
    burst: WholeNumber = Field(100, ge=1, le=100_000)


class ApiKeyInfo(BaseModel):
    keyId: str
    name: str
    scopes: list[str]
    ratePerSecond: float
    burst: int
    createdAt: int
    revokedAt: int | None = None


class ApiKeyCreated(ApiKeyInfo):
    apiKey: str = Field(description="The key itself: shown once, only its hash is stored.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyInfo]


class PutEventsRequest(BaseModel):
    """EventBridge's PutEvents request: the entries to publish (checked as EventBridge checks them)."""

    model_config = ConfigDict(extra="forbid")

    Entries: list[PutEventsEntry] = Field(
        description=f"1-{MAX_ENTRIES} entries, at most {MAX_REQUEST_BYTES // 1024} KiB in all (Source, DetailType, "
        "Detail and Resources in UTF-8, 14 bytes for a Time); a request over either limit is a 400.",
        json_schema_extra={"minItems": 1, "maxItems": MAX_ENTRIES},
    )


class PutEventsAccepted(BaseModel):
    """An accepted entry: the id of the event as its consumers see it (the envelope's `id`)."""

    model_config = ConfigDict(extra="forbid")

    EventId: str


class PutEventsFailed(BaseModel):
    """A refused entry (not enqueued): InvalidArgument or MalformedDetail (fix the entry), InternalFailure (retry)."""

    model_config = ConfigDict(extra="forbid")

    ErrorCode: str
    ErrorMessage: str


class PutEventsResponse(BaseModel):
    FailedEntryCount: int
    Entries: list[PutEventsAccepted | PutEventsFailed] = Field(description="One result per entry, in request order.")


class Health(BaseModel):
    status: Literal["ok"]


class Problem(BaseModel):
    detail: str


class WebhookResult(BaseModel):
    status: Literal["recorded", "duplicate", "confirmed", "acknowledged"] = Field(
        description="recorded: new outcomes kept; duplicate: every report was seen before (a provider's retry); "
        "confirmed / acknowledged: an SNS subscription confirmed, an unsubscribe acknowledged."
    )
    recorded: int = Field(description="Outcomes recorded by this request.")
    duplicates: int = Field(description="Reports recorded before, left as they were.")
