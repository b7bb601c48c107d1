"""Counting AWS calls with botocore event hooks, on every client the wiring builds
(`workflow_manager.wiring.AwsClients.client`).

`after-call` fires once per API call, after botocore's retries, with the parsed answer (an error
answer too: botocore raises its ClientError after the event); `after-call-error` fires when the call
got no answer at all (a connection or read timeout after the retries).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from executor.aws_errors import THROTTLING_ERROR_CODES
from workflow_manager.telemetry.metrics import AWS_CALL_RETRIES, AWS_CALLS, ERROR, OK, THROTTLED


def outcome_of(parsed: Any, http_status: int | None) -> str:
    error_code = ((parsed or {}).get("Error") or {}).get("Code") if isinstance(parsed, dict) else None
    if error_code in THROTTLING_ERROR_CODES:
        return THROTTLED
    if error_code or (http_status is not None and http_status >= 300):
        return ERROR
    return OK


def _after_call(service: str, http_response=None, parsed=None, model=None, **_: Any) -> None:
    operation = model.name if model is not None else "unknown"
    status = getattr(http_response, "status_code", None)
    AWS_CALLS.labels(service=service, operation=operation, outcome=outcome_of(parsed, status)).inc()
    retries = ((parsed or {}).get("ResponseMetadata") or {}).get("RetryAttempts", 0)
    if retries:
        AWS_CALL_RETRIES.labels(service=service, operation=operation).inc(retries)


def _after_call_error(service: str, event_name: str = "", **_: Any) -> None:
    # This event carries no operation model: its name ends with the operation's.
    operation = event_name.rsplit(".", 1)[-1] or "unknown"
    AWS_CALLS.labels(service=service, operation=operation, outcome=ERROR).inc()


def count_calls(client: Any, service: str) -> Any:
    """Registers the counting hooks on `client`, labelled with `service` (the name the client was
    built with: `stepfunctions`, not botocore's event name `sfn`). Returns the client."""
    # unique_id: a client is hooked once even if it is passed here twice.
    client.meta.events.register(
        "after-call", partial(_after_call, service), unique_id=f"wfm-metrics-{id(client)}"
    )
    client.meta.events.register(
        "after-call-error", partial(_after_call_error, service), unique_id=f"wfm-metrics-error-{id(client)}"
    )
    return client
