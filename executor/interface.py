"""The executor port: what the domain asks of a backend that runs workflows.

One implementation per backend (`executor.sfn`, later `executor.batch`), chosen per workflow by
`executor.routing` from the definition's `manager`. Implementations translate backend errors into
`workflow_manager.domain.errors` and never return botocore objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from workflow_manager.domain.models import Job, Workflow, WorkflowStatus


@dataclass
class ExecutionReport:
    """What the backend says of one workflow's execution right now.

    `found` is False when the backend has no execution for the workflow (yet, or any more).
    `jobs` is None when the report was taken without the job list.
    """

    found: bool
    status: WorkflowStatus | None = None
    stopped_at: datetime | None = None
    output: str | None = None
    status_reason: str | None = None
    jobs: list[Job] | None = None
    last_job: Job | None = None


class Executor(Protocol):
    def validate_definition(self, state_machine: dict[str, Any]) -> None:
        """Raise InvalidInput when this executor cannot run the state machine (checked when a
        definition is saved, so that a start never fails for it)."""

    def start(self, workflow: Workflow) -> None:
        """Start the workflow's execution. Raises InvalidInput when the backend rejects the
        caller's input, BackendUnavailable/BackendError otherwise."""

    def cancel(self, workflow: Workflow, reason: str) -> None:
        """Stop the workflow's execution; returns once the backend has stopped it."""

    def report(self, workflow: Workflow, include_jobs: bool = True) -> ExecutionReport:
        """The execution's status, and its jobs when `include_jobs`."""

    def check_health(self) -> None:
        """Raise BackendUnavailable when the backend cannot be reached."""
