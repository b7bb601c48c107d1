"""The one exception hierarchy of the service.

Every layer raises these; `workflow_manager.api.errors` maps them to HTTP status codes in one place
(`WorkflowManagerError.status`). Ports translate backend errors (botocore, pynamodb) into them, so the
domain never sees a backend exception.
"""

from __future__ import annotations


class WorkflowManagerError(Exception):
    """Base class. `status` is the HTTP status code the API answers with."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(WorkflowManagerError):
    """The caller's request is malformed or breaks a rule: 400."""

    status = 400


class Unauthenticated(WorkflowManagerError):
    """No token, or one the service does not know: 401 (with `WWW-Authenticate: Bearer`)."""

    status = 401


class Forbidden(WorkflowManagerError):
    """A known caller that may not do this, or a request a browser must not make: 403."""

    status = 403


class NotFound(WorkflowManagerError):
    """The named entity does not exist: 404."""

    status = 404


class Conflict(WorkflowManagerError):
    """The request conflicts with the current state of an entity: 409."""

    status = 409


class ConcurrentModification(Conflict):
    """A store write lost a race: the revision it read is no longer current. Domain services
    re-read and retry; it reaches a caller as 409 only when retries run out."""


class TerminalStatusGuard(Conflict):
    """A write would move a workflow from a terminal status back to a non-terminal one."""


class PayloadTooLarge(WorkflowManagerError):
    status = 413


class BackendUnavailable(WorkflowManagerError):
    """A backend (store, Step Functions, Batch) cannot be reached or keeps throttling: 503."""

    status = 503


class BackendError(WorkflowManagerError):
    """A backend answered with an error that is not the caller's fault: 500."""

    status = 500
