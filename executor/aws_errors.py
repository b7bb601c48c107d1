"""Translating botocore errors into the domain's errors, for every port that talks to AWS.

One table of what "unavailable" means (throttling and AWS-side faults, retried by botocore's
standard retry mode before they get here), so that Step Functions, Batch and DynamoDB errors map to
the same status codes: unavailable -> 503, the caller's mistake -> 400, anything else -> 500.
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

UNAVAILABLE_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
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


def translate_aws_error(
    err: Exception, action: str, service: str, input_codes: Collection[str] = ()
) -> WorkflowManagerError:
    """`err` from `action` on `service` as the domain's error. `input_codes` are the error codes
    that mean the request, built from the caller's input, was wrong (400)."""
    if isinstance(err, ClientError):
        code = error_code(err)
        message = err.response.get("Error", {}).get("Message", "") or str(err)
        if code in UNAVAILABLE_ERROR_CODES:
            return BackendUnavailable(f"{action}: {service} is unavailable: {message}")
        if code in input_codes:
            return InvalidInput(f"{action}: {message}")
        return BackendError(f"{action}: {code}: {message}")
    return BackendUnavailable(f"{action}: cannot reach {service}: {err}")
