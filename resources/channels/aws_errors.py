"""Classification of AWS errors for the production channels (SES, SNS): transient or permanent, never the text."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from resources.channels.base import PermanentSendError, TransientSendError

T = TypeVar("T")

_AWS_TRANSIENT = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "InternalErrorException",
    "KMSThrottlingException",
}
_AWS_BOUNCE = {"InvalidParameter", "InvalidParameterValue", "InvalidParameterException", "EndpointDisabled", "OptedOut"}


def aws_call(fn: Callable[[], T]) -> T:
    """Run one AWS request, turning its failure into a `TransientSendError` (throttling, 5xx, 429, connection)
    or a `PermanentSendError` (anything else; a bounce when the recipient parameter was refused)."""
    try:
        return fn()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "ClientError")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        if code in _AWS_TRANSIENT or status >= 500 or status == 429:
            raise TransientSendError(f"aws_{code}") from None
        raise PermanentSendError(f"aws_{code}", bounce=code in _AWS_BOUNCE) from None
    except (TimeoutError, BotoConnectionError, ConnectionError):
        raise TransientSendError("aws_connection") from None
    except BotoCoreError:
        raise TransientSendError("aws_client") from None
