"""A Step Functions execution history turned into the workflow's jobs.

Follows the reference's `wfupdater/processevents.go` (notes 3.8): one job per entered Task, Choice
and Succeed state, retries folded into `attempts`, the reference's `statusReason` texts. Fixed as the
contract asks (section 7, notes 9.9):

- The caller passes the whole history (every page of GetExecutionHistory, chronological) and it is
  read in one pass, so execution-level events (ExecutionAborted/Failed/TimedOut) update the last job
  of the execution, not the last job of whichever page they happened to be on.
- A job inside a Parallel branch or a Map iteration gets its `stateResource` from its state found at
  any depth of the definition (the reference looked at top-level states only and left it empty).
- Service-integration tasks (`arn:aws:states:::...`): TaskFailed and TaskStartFailed fail the job like
  ActivityFailed (the reference ignored them).

How an event finds its job: a Task/Choice/SucceedStateEntered event starts a job; any other event
belongs to the job of its `previousEventId`. Events of different Parallel branches and Map iterations
interleave in the history, but each one's `previousEventId` chain stays inside its own branch, so the
chains keep the jobs apart.

A standard execution has at most 25,000 events (a Step Functions quota); the work
is one pass with a dict lookup per event.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from workflow_manager.domain.models import (
    Job,
    JobAttempt,
    JobStatus,
    StateResource,
    StateResourceType,
    Workflow,
)
from workflow_manager.domain.states import find_state
from workflow_manager.domain.status import DONE_JOB_STATUSES

log = logging.getLogger(__name__)

# The reference's maxFailureReasonLines: how much of a failure's cause goes into statusReason.
MAX_FAILURE_REASON_LINES = 3

# The reference's resources.StatusReasonJobTimedOut / StatusReasonWorkflowTimedOut.
STATUS_REASON_JOB_TIMED_OUT = "Job timed out"
STATUS_REASON_WORKFLOW_TIMED_OUT = "Workflow timed out"
STATUS_REASON_RESOURCE_DOES_NOT_EXIST = "State resource does not exist"

# Events that start a job.
JOB_STATE_ENTERED_EVENTS = frozenset({"TaskStateEntered", "ChoiceStateEntered", "SucceedStateEntered"})
# Events that belong to no job: the execution's start, and the states that are not jobs. The
# reference's list, plus the Map and Parallel container events, so that they are not attached to the
# job that happened to precede them.
NO_JOB_EVENTS = frozenset(
    {
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "ParallelStateEntered",
        "ParallelStateExited",
        "ParallelStateStarted",
        "ParallelStateSucceeded",
        "ParallelStateFailed",
        "ParallelStateAborted",
        "WaitStateEntered",
        "WaitStateExited",
        "WaitStateAborted",
        "FailStateEntered",
        "MapStateEntered",
        "MapStateExited",
        "MapStateStarted",
        "MapStateSucceeded",
        "MapStateFailed",
        "MapStateAborted",
        "MapIterationStarted",
        "MapIterationSucceeded",
        "MapIterationFailed",
        "MapIterationAborted",
    }
)
# Events about the whole execution: they update the last job.
EXECUTION_END_EVENTS = frozenset({"ExecutionAborted", "ExecutionFailed", "ExecutionTimedOut"})

SCHEDULED_EVENTS = frozenset({"TaskScheduled", "ActivityScheduled", "LambdaFunctionScheduled"})
STARTED_EVENTS = frozenset({"TaskStarted", "ActivityStarted", "LambdaFunctionStarted"})
FAILED_EVENTS = frozenset(
    {
        "ActivityFailed",
        "LambdaFunctionFailed",
        "LambdaFunctionScheduleFailed",
        "LambdaFunctionStartFailed",
        "TaskSubmitFailed",
        "TaskFailed",
        "TaskStartFailed",
    }
)
TIMED_OUT_EVENTS = frozenset({"ActivityTimedOut", "LambdaFunctionTimedOut", "TaskTimedOut"})
SUCCEEDED_EVENTS = frozenset(
    {"TaskSucceeded", "ActivitySucceeded", "LambdaFunctionSucceeded", "ExecutionSucceeded"}
)
STATE_SUCCEEDED_EXIT_EVENTS = frozenset({"ChoiceStateExited", "SucceedStateExited"})


def jobs_from_history(events: list[dict[str, Any]], workflow: Workflow) -> list[Job]:
    """The jobs of an execution, from its whole history (boto3 `get_execution_history` events of all
    pages, chronological)."""
    jobs: list[Job] = []
    job_of_event: dict[int, Job] = {}
    for event in events:
        event_type = event.get("type", "")
        job = _job_of(event, event_type, jobs, job_of_event)
        if job is None:
            continue
        _apply(event, event_type, job, workflow)
    if events and events[-1].get("type") in ENDED_EXECUTION_EVENTS:
        _close_open_jobs(jobs, events[-1])
    return jobs


# An execution that fails, times out or is stopped ends its other running branches and iterations
# without an event of theirs: their jobs would stay open for ever, and a workflow with open jobs is
# never "done" (it could never be resumed). They end with the execution.
ENDED_EXECUTION_EVENTS = {"ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}
STATUS_REASON_ENDED_WITH_EXECUTION = "the workflow ended before this job finished"


def _close_open_jobs(jobs: list[Job], end_event: dict[str, Any]) -> None:
    status = (
        JobStatus.ABORTED_BY_USER
        if end_event.get("type") == "ExecutionAborted"
        else JobStatus.ABORTED_DEPS_FAILED
    )
    for job in jobs:
        if job.status not in DONE_JOB_STATUSES:
            job.status = status
            job.stopped_at = job.stopped_at or _utc(end_event.get("timestamp"))
            job.status_reason = job.status_reason or STATUS_REASON_ENDED_WITH_EXECUTION


def last_job_from_history(events: list[dict[str, Any]], workflow: Workflow) -> Job | None:
    """The last job of an execution (the reference's lastJob), or None when it has none."""
    jobs = jobs_from_history(events, workflow)
    return jobs[-1] if jobs else None


def last_lines(text: str, count: int) -> str:
    """The last `count` lines of `text` once surrounding whitespace is trimmed."""
    if count <= 0:
        return ""
    return "\n".join((text or "").strip().split("\n")[-count:])


def state_resource_descriptor(resource: str) -> tuple[str, StateResourceType]:
    """(name, type) of a Task state's `Resource`, as jobs report it in `stateResource`."""
    for prefix, resource_type in (
        ("lambda:", StateResourceType.LAMBDA_FUNCTION_ARN),
        ("glue:", StateResourceType.TASK_ARN),
        ("batch:", StateResourceType.JOB_DEFINITION_ARN),
    ):
        if resource.startswith(prefix):
            return resource[len(prefix) :], resource_type
    if resource.startswith("arn:"):
        if ":activity:" in resource:
            return resource, StateResourceType.ACTIVITY_ARN
        if ":lambda:" in resource:
            return resource, StateResourceType.LAMBDA_FUNCTION_ARN
        if ":batch:" in resource or ":states:::batch" in resource:
            return resource, StateResourceType.JOB_DEFINITION_ARN
        return resource, StateResourceType.TASK_ARN
    # As the reference: anything else, even the empty Resource of a Choice or Succeed state.
    return resource, StateResourceType.ACTIVITY_ARN


def _job_of(
    event: dict[str, Any], event_type: str, jobs: list[Job], job_of_event: dict[int, Job]
) -> Job | None:
    """The reference's `eventToJob`: the job an event belongs to, recording it for later events."""
    event_id = event.get("id")
    if event_type in NO_JOB_EVENTS:
        return None
    if event_type in JOB_STATE_ENTERED_EVENTS:
        job = Job(id=str(event_id))
        job_of_event[event_id] = job
        jobs.append(job)
        return job
    if event_type in EXECUTION_END_EVENTS:
        if jobs:
            return jobs[-1]
        log.debug("event-with-unknown-job: %s event %s before any job", event_type, event_id)
        return None
    job = job_of_event.get(event.get("previousEventId"))
    if job is None:
        # An execution whose last state is no job (a Pass, a Wait) succeeds after no job: usual.
        level = logging.DEBUG if event_type == "ExecutionSucceeded" else logging.WARNING
        log.log(level, "event-with-unknown-job: %s event %s", event_type, event_id)
        return None
    job_of_event[event_id] = job
    return job


def _apply(event: dict[str, Any], event_type: str, job: Job, workflow: Workflow) -> None:
    """The reference's per-event job mutation (notes 3.8 table)."""
    timestamp = _utc(event.get("timestamp"))
    if event_type in JOB_STATE_ENTERED_EVENTS:
        _enter(event, event_type, job, workflow, timestamp)
    elif event_type in SCHEDULED_EVENTS:
        if job.status == JobStatus.FAILED:
            _start_next_attempt(job, str(event.get("id")), timestamp)
        job.status = JobStatus.QUEUED
    elif event_type in STARTED_EVENTS:
        job.status = JobStatus.RUNNING
        job.started_at = timestamp
        details = event.get("activityStartedEventDetails")
        if details is not None:
            job.container = details.get("workerName") or ""
    elif event_type in FAILED_EVENTS:
        cause, error = _cause_and_error(event, event_type)
        job.status = JobStatus.FAILED
        job.stopped_at = timestamp
        job.status_reason = f"{last_lines(cause, MAX_FAILURE_REASON_LINES)}\n{error}".strip()
    elif event_type in TIMED_OUT_EVENTS:
        cause, error = _cause_and_error(event, event_type)
        job.status = JobStatus.FAILED
        job.stopped_at = timestamp
        job.status_reason = (
            f"{STATUS_REASON_JOB_TIMED_OUT}\n{error}\n{last_lines(cause, MAX_FAILURE_REASON_LINES)}"
        ).strip()
    elif event_type in SUCCEEDED_EVENTS:
        job.status = JobStatus.SUCCEEDED
    elif event_type == "ExecutionAborted":
        job.status = JobStatus.ABORTED_BY_USER
        job.stopped_at = timestamp
        details = event.get("executionAbortedEventDetails")
        if details is not None:
            job.status_reason = details.get("cause") or ""
    elif event_type == "ExecutionFailed":
        job.status = JobStatus.FAILED
        job.stopped_at = timestamp
        details = event.get("executionFailedEventDetails")
        if details is not None:
            job.status_reason = _execution_failure_reason(details, job.status_reason)
    elif event_type == "ExecutionTimedOut":
        job.status = JobStatus.FAILED
        job.stopped_at = timestamp
        details = event.get("executionTimedOutEventDetails")
        if details is None:
            job.status_reason = STATUS_REASON_WORKFLOW_TIMED_OUT
        else:
            error = details.get("error") or ""
            cause = last_lines(details.get("cause") or "", MAX_FAILURE_REASON_LINES)
            job.status_reason = f"{STATUS_REASON_WORKFLOW_TIMED_OUT}\n{error}\n{cause}".strip()
    elif event_type == "TaskStateExited":
        job.stopped_at = timestamp
        output = (event.get("stateExitedEventDetails") or {}).get("output")
        if output is not None:
            job.output = output
    elif event_type in STATE_SUCCEEDED_EXIT_EVENTS:
        job.status = JobStatus.SUCCEEDED
        job.stopped_at = timestamp
        output = (event.get("stateExitedEventDetails") or {}).get("output")
        if output is not None:
            job.output = output
    else:
        # 50+ event types, most of which say nothing a job shows (TaskSubmitted, ...).
        log.debug("unhandled-sfn-event: %s in workflow %s", event_type, workflow.id)


def _enter(
    event: dict[str, Any],
    event_type: str,
    job: Job,
    workflow: Workflow,
    timestamp: datetime | None,
) -> None:
    job.attempts = []
    job.created_at = timestamp
    if event_type != "TaskStateEntered":
        # Choice and Succeed states do not wait on a resource: they start when entered.
        job.started_at = timestamp
    job.status = JobStatus.CREATED
    details = event.get("stateEnteredEventDetails")
    if details is None:
        return
    state_name = details.get("name") or ""
    job.state = state_name
    job.input = details.get("input") or ""
    resource_name, resource_type = "", ""
    state = find_state(workflow.workflow_definition.state_machine, state_name)
    if state is not None:
        resource = state.get("Resource")
        resource_name, resource_type = state_resource_descriptor(
            resource if isinstance(resource, str) else ""
        )
    job.state_resource = StateResource(
        name=resource_name,
        namespace=workflow.namespace,
        type=resource_type,
        last_updated=timestamp,
    )


def _start_next_attempt(job: Job, event_id: str, timestamp: datetime | None) -> None:
    """A Scheduled event after a failure is a Retry: the failed try becomes an attempt and the job
    starts over under the new event's id, keeping its state, input and state resource."""
    attempt = JobAttempt(
        reason=job.status_reason,
        created_at=job.created_at,
        started_at=job.started_at,
        stopped_at=job.stopped_at,
        task_arn=job.container,
    )
    state_resource = copy.copy(job.state_resource)
    if state_resource is not None:
        state_resource.last_updated = timestamp
    fresh = Job(
        id=event_id,
        state=job.state,
        input=job.input,
        created_at=timestamp,
        attempts=[*job.attempts, attempt],
        state_resource=state_resource,
    )
    # In place: the job is shared by the job list and the event-to-job map.
    for field in fields(Job):
        setattr(job, field.name, getattr(fresh, field.name))


def _cause_and_error(event: dict[str, Any], event_type: str) -> tuple[str, str]:
    # boto3 names each event's details after its type: ActivityFailed -> activityFailedEventDetails.
    details = event.get(f"{event_type[0].lower()}{event_type[1:]}EventDetails") or {}
    return details.get("cause") or "", details.get("error") or ""


def _execution_failure_reason(details: dict[str, Any], current_reason: str) -> str:
    error = details.get("error") or ""
    cause = details.get("cause") or ""
    if error == "States.Runtime" and "Internal Error" in cause:
        # What Step Functions reports when a Task's activity does not exist.
        return STATUS_REASON_RESOURCE_DOES_NOT_EXIST
    if error == "States.Timeout":
        # The TimedOut event of the job has already said so, with its details.
        return current_reason
    return f"{last_lines(cause, MAX_FAILURE_REASON_LINES)}\n{error}".strip()


def _utc(timestamp: Any) -> datetime | None:
    """An event time as an aware UTC datetime at millisecond precision, like every time the service
    stores (boto3 gives local-zone datetimes with microseconds)."""
    if not isinstance(timestamp, datetime):
        return None
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    timestamp = timestamp.astimezone(UTC)
    return timestamp.replace(microsecond=timestamp.microsecond // 1000 * 1000)
