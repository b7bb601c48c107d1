"""Translating botocore errors into the domain's errors, for every port that talks to AWS.

One table of what "unavailable" means (throttling and AWS-side faults, retried by botocore's
standard retry mode before they get here), so that Step Functions, Batch and DynamoDB errors map to
the same status codes: unavailable -> 503, the caller's mistake -> 400, anything else -> 500.

An AWS message is copied into the API's message only when it is text: an endpoint (an emulator, a
proxy) that answers with an HTML page has the page replaced by the error code and HTTP status.
"""

from __future__ import annotations

from collections.abc import Collection

from botocore.exceptions import ClientError

from workflow_manager.domain.errors import (
    BackendError,
    BackendUnavailable,
    InvalidInput,
    WorkflowManagerError,
)

# A request refused with one of these was not run: retrying it cannot do its work twice.
THROTTLING_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    }
)
UNAVAILABLE_ERROR_CODES = THROTTLING_ERROR_CODES | frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        # DynamoDB: another transaction holds the item; retrying later succeeds.
        "TransactionInProgressException",
    }
)


def error_code(err: Exception) -> str:
    if isinstance(err, ClientError):
        return err.response.get("Error", {}).get("Code", "")
    return ""


def error_message(err: ClientError, service: str) -> str:
    """AWS's message for `err`; when it has none, or the endpoint answered with an HTML page, its
    code and HTTP status instead: a backend's HTML never reaches an API message."""
    error = err.response.get("Error", {})
    message = str(error.get("Message", "") or "").strip()
    lowered = message[:512].lower()
    is_html = message.startswith("<") or "<html" in lowered or "<!doctype" in lowered
    if message and not is_html:
        return message
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "unknown")
    code = f"{error['Code']}: " if error.get("Code") else ""
    return f"{code}{service} answered HTTP {status} with {'an HTML page' if is_html else 'no message'}"


def _is_client_refusal(err: ClientError) -> bool:
    # moto refuses some requests (a definition its parser rejects, an input it cannot parse) with a
    # 4xx and no error code; 429 is throttling, not a refusal.
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return not error_code(err) and 400 <= status < 500 and status != 429


def translate_aws_error(
    err: Exception, action: str, service: str, input_codes: Collection[str] = ()
) -> WorkflowManagerError:
    """`err` from `action` on `service` as the domain's error. `input_codes` are the error codes
    that mean the request, built from the caller's input, was wrong (400); for such an action a 4xx
    without an error code is one too."""
    if isinstance(err, ClientError):
        code = error_code(err)
        message = error_message(err, service)
        if code in UNAVAILABLE_ERROR_CODES:
            return BackendUnavailable(f"{action}: {service} is unavailable: {message}")
        if input_codes and (code in input_codes or _is_client_refusal(err)):
            return InvalidInput(f"{action}: {message}")
        if code and not message.startswith(f"{code}: "):
            message = f"{code}: {message}"
        return BackendError(f"{action}: {message}")
    return BackendUnavailable(f"{action}: cannot reach {service}: {err}")
