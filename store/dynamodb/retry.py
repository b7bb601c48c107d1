"""Retries of the DynamoDB store: capped, jittered exponential backoff for throttling and transient
errors, counted by the store itself (botocore's and pynamodb's own retries are off), and how a
failed call is described. What counts as transient is `executor.aws_errors.UNAVAILABLE_ERROR_CODES`,
the one list for every AWS adapter, plus any connection failure."""

from __future__ import annotations

import random
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError
from pynamodb.exceptions import PynamoDBException

from executor.aws_errors import UNAVAILABLE_ERROR_CODES, error_code


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, for throttling and transient errors."""

    attempts: int = 6
    base_seconds: float = 0.05
    cap_seconds: float = 1.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))


def store_error_code(err: Exception) -> str | None:
    """The AWS error code of a pynamodb or botocore error, None for one without."""
    if isinstance(err, PynamoDBException):
        return err.cause_response_code
    return error_code(err) or None


def is_transient(err: Exception) -> bool:
    cause = err.cause if isinstance(err, PynamoDBException) else err
    if isinstance(cause, BotoCoreError):  # connection refused, reset, timed out
        return True
    return store_error_code(err) in UNAVAILABLE_ERROR_CODES


def describe_error(err: Exception | None) -> str:
    if err is None:
        return "no attempt made"
    code = store_error_code(err)
    if code:
        message = err.cause_response_message if isinstance(err, PynamoDBException) else str(err)
        return f"{code}: {message}"
    if isinstance(err, PynamoDBException):
        return str(err.cause or err)
    return str(err)
