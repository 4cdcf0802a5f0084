"""The routes' shared vocabulary: path and query parameter types (their patterns and bounds are the OpenAPI
contract, and the candidate pages' fast path checks the same ones), page sizes, and the documented error responses."""

from typing import Annotated, Any

from fastapi import Path, Query

from engage_assets.serving import models as m

MAX_PAGE = 200
DEFAULT_PAGE = 50

ProgramId = Annotated[str, Path(pattern=m.PROGRAM_PATTERN, description="programId, e.g. churn-prevention")]
CustomerId = Annotated[str, Path(pattern=m.ID_PATTERN, description="customerId")]
MessageId = Annotated[str, Path(pattern=m.ID_PATTERN)]
TaskId = Annotated[str, Path(pattern=m.ID_PATTERN)]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
Label = Annotated[str, Query(pattern=m.LABEL_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size (1-{MAX_PAGE})")]
Cursor = Annotated[str | None, Query(pattern=m.CURSOR_PATTERN, description="nextCursor of the previous page")]
MinScore = Annotated[float | None, Query(ge=0.0, le=1.0, description="Lowest score returned (0-1)")]

Responses = dict[int | str, dict[str, Any]]

E400: Responses = {400: {"model": m.Problem, "description": "Malformed request body or invalid cursor"}}
E401: Responses = {401: {"model": m.Problem, "description": "Missing or invalid API key"}}
E403: Responses = {403: {"model": m.Problem, "description": "The key lacks the required scope"}}
E404: Responses = {404: {"model": m.Problem, "description": "Not found"}}
E409: Responses = {409: {"model": m.Problem, "description": "Conflicts with the resource's state"}}
E422: Responses = {422: {"model": m.Problem, "description": "Unknown query parameter"}}
E429: Responses = {
    429: {
        "model": m.Problem,
        "description": "Rate limit exceeded; see Retry-After",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
    }
}
COMMON: Responses = {**E401, **E403, **E429}  # every keyed route
