"""AWS's API rates, enforced by the emulator when asked (`WFM_EMULATOR_QUOTAS=aws`): a token bucket
per API action, and ThrottlingException (Batch: HTTP 429 TooManyRequestsException) once it is
empty, as AWS answers. Tests and the benchmark then see throttling where AWS would throttle,
instead of an emulator that answers everything at once.

Bucket sizes and refill rates per second, us-east-1 (AWS Step Functions quotas, "Quotas related to
API action throttling", standard workflows; AWS Batch service quotas, SubmitJob TPS). Actions not
listed are not limited.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from executor.rate_limit import TokenBucket

QUOTA_MODES = ("off", "aws")
# GET here answers the counts of calls and throttled calls per action (JSON).
CALLS_PATH = "/wfm-emulator/calls"

# (service, action) -> (bucket size, refill per second)
AWS_API_QUOTAS: dict[tuple[str, str], tuple[float, float]] = {
    ("states", "StartExecution"): (1300, 300),
    ("states", "DescribeExecution"): (250, 15),
    ("states", "GetExecutionHistory"): (400, 20),
    ("states", "ListExecutions"): (100, 5),
    ("states", "StopExecution"): (1000, 200),
    ("batch", "SubmitJob"): (50, 50),
}
# Batch's REST paths (`/v1/submitjob`) -> action names.
_BATCH_ACTIONS = {action.lower(): action for service, action in AWS_API_QUOTAS if service == "batch"}


def api_action(environ: dict[str, Any]) -> tuple[str, str] | None:
    """The (service, action) of a request: X-Amz-Target for the JSON protocols, the path for Batch."""
    target = environ.get("HTTP_X_AMZ_TARGET") or ""
    if target.startswith("AWSStepFunctions."):
        return ("states", target.split(".", 1)[1])
    path = environ.get("PATH_INFO") or ""
    if path.startswith("/v1/"):
        action = _BATCH_ACTIONS.get(path[4:].strip("/").lower())
        return ("batch", action) if action else None
    return None


class QuotaMiddleware:
    """WSGI middleware in front of moto's server application."""

    def __init__(self, app: Callable, quotas: dict[tuple[str, str], tuple[float, float]] = AWS_API_QUOTAS):
        self._app = app
        self._buckets = {key: TokenBucket(refill, burst=size) for key, (size, refill) in quotas.items()}
        self.throttled: dict[tuple[str, str], int] = {}
        # Every call of an action with a quota, answered or throttled: what a benchmark reads at
        # CALLS_PATH to see the calls per second the service made.
        self.calls: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "calls": {f"{s}:{a}": n for (s, a), n in self.calls.items()},
                "throttled": {f"{s}:{a}": n for (s, a), n in self.throttled.items()},
            }

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CALLS_PATH:
            payload = json.dumps(self.counts()).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
            )
            return [payload]
        action = api_action(environ)
        bucket = self._buckets.get(action) if action else None
        if action is not None and bucket is not None:
            with self._lock:
                self.calls[action] = self.calls.get(action, 0) + 1
        if bucket is None or bucket.try_take():
            return self._app(environ, start_response)
        with self._lock:
            self.throttled[action] = self.throttled.get(action, 0) + 1
        if action[0] == "batch":
            status, body = (
                "429 Too Many Requests",
                {"__type": "TooManyRequestsException", "message": "Too Many Requests"},
            )
        else:
            status, body = "400 Bad Request", {"__type": "ThrottlingException", "message": "Rate exceeded"}
        payload = json.dumps(body).encode()
        start_response(
            status, [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(payload)))]
        )
        return [payload]
