"""The executor port: what the domain asks of a backend that runs workflows.

One implementation per backend (`executor.sfn`, `executor.batch`); `executor.routing` implements the
same port by handing each call to the executor of the definition's `manager`, so the services never
know whether they talk to one backend or several. Implementations translate backend errors into
`workflow_manager.domain.errors` and never return botocore objects.

Contract (checked against every implementation by `tests/test_executor_contract.py`):
- `start` never changes the workflow it is given: what it created comes back as a StartedExecution.
- A start that fails before anything ran raises the domain error itself; one that fails after it
  created work (Batch jobs, terminated again) raises StartAbandoned with that work, so the caller
  can record it instead of losing track of it.
- `progress`, when given, is called before each piece of work is created, with the work created
  so far: the caller records it (so that a crash leaves nothing it cannot see or cancel) and may
  stop the start by raising StartInterrupted.
- `resuming=True` finishes a start that another attempt began (it may have died part-way): work
  that attempt created is found and adopted, never created twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from workflow_manager.domain.errors import InvalidInput, WorkflowManagerError
from workflow_manager.domain.models import Job, Manager, Workflow, WorkflowDefinition, WorkflowStatus


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


@dataclass
class StartedExecution:
    """What a start created. `jobs` are the jobs submitted up front (Batch: one per Batch job, in
    submission order); empty for a backend whose jobs appear as it runs (Step Functions: they come
    from the execution history in `report`). The caller records them on the workflow."""

    jobs: list[Job] = field(default_factory=list)
    # The execution runs from its start (a Step Functions execution is RUNNING once StartExecution
    # answers): the write that records the start says so, and no event or refresh has to.
    running: bool = False


class StartAbandoned(Exception):
    """A start failed after the executor had created work, which it compensated (Batch: the jobs
    already submitted were terminated). `error` is the domain error, whose `status` the caller
    answers with; `jobs` is the work that was created, so that it is never unknown to the service."""

    def __init__(self, error: WorkflowManagerError, jobs: list[Job]):
        super().__init__(error.message)
        self.error = error
        self.jobs = jobs


class StartInterrupted(Exception):
    """Raised by a start's `progress` callback to stop the start. With `terminate`, the work
    created so far is stopped (the workflow was cancelled meanwhile); without it, that work is left
    as it is (another attempt took the start over and adopts it). The executor sets `jobs` to the
    work it had created and re-raises."""

    def __init__(self, reason: str, terminate: bool):
        super().__init__(reason)
        self.reason = reason
        self.terminate = terminate
        self.jobs: list[Job] = []


# What a start reports before creating each piece of work: the jobs created so far.
StartProgress = Callable[[list[Job]], None]


class Executor(Protocol):
    def validate_definition(self, definition: WorkflowDefinition) -> None:
        """Raise InvalidInput when this executor cannot run the definition (checked when a
        definition is saved, so that a start never fails for it)."""

    def start(
        self, workflow: Workflow, progress: StartProgress | None = None, resuming: bool = False
    ) -> StartedExecution:
        """Start the workflow's execution and return what was created (all of it, with what a
        resumed start adopted); the workflow is left as it was. Raises InvalidInput when the
        backend rejects the caller's input, BackendUnavailable/BackendError otherwise,
        StartAbandoned when it fails after work was created, and StartInterrupted when
        `progress` stopped it."""

    def cancel(self, workflow: Workflow, reason: str) -> None:
        """Stop the workflow's execution; returns once the backend has stopped it. Raises NotFound
        when the workflow has no execution."""

    def report(
        self, workflow: Workflow, include_jobs: bool = True, include_status: bool = True
    ) -> ExecutionReport:
        """The execution's status, and its jobs when `include_jobs`. Without `include_status`
        (an ended execution whose status came from its event) the status may be left None, and
        only what the jobs cost is spent."""

    def check_health(self) -> None:
        """Raise BackendUnavailable when the backend cannot be reached."""


def require_manager(definition: WorkflowDefinition, manager: Manager, executor_name: str) -> None:
    """Raise InvalidInput unless `definition` is for `manager` (an omitted manager is
    step-functions): an executor refuses another manager's definition (a router that routed
    wrongly)."""
    actual = definition.manager or Manager.STEP_FUNCTIONS
    if actual != manager:
        raise InvalidInput(
            f"definition '{definition.name}' is a '{actual}' definition; the {executor_name} executor "
            f"runs '{manager}' definitions"
        )


@dataclass(frozen=True)
class ReceivedEvent:
    """One AWS event about an execution or a job (executor.aws_events): the workflow it is about
    (None: not one of this service's), and the receipt that acknowledges it."""

    workflow_id: str | None
    receipt: str
    kind: str = ""
    # The execution's status as the event tells it, when it tells all of it (a Step Functions
    # status change): applied as it is, without asking the backend. None: refresh the workflow.
    status: ExecutionReport | None = None


class EventSource(Protocol):
    """Where AWS events about the service's executions and jobs arrive (an SQS queue)."""

    def receive(self, wait_seconds: int = 20) -> list[ReceivedEvent]:
        """The next events, waiting up to `wait_seconds` for one. Raises BackendUnavailable."""

    def acknowledge(self, receipts: list[str]) -> None:
        """Remove the events with these receipts for good."""
