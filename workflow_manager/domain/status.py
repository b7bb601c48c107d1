"""Status rules, kept as data in one place (the reference keeps its terminal states in one list).

- A workflow status is terminal when it is succeeded, failed or cancelled; a terminal status never
  moves back to a non-terminal one, and it never changes to another terminal status either, except
  that a user's cancellation is recorded on a workflow the backend has not yet reported finished.
- Cancel is refused once a workflow succeeded or failed; entering a terminal status records what
  TERMINAL_EFFECTS says (resolved, output, last job, whose reason).
- A workflow is "done" (reference 2.7) when every job is done and the status is succeeded or failed,
  or cancelled and resolved by the user. Resume requires done.
- A workflow whose jobs are all submitted up front (Batch) takes its status from its jobs' statuses
  by an ordered table of rules, the first that holds winning (`WORKFLOW_STATUS_FROM_JOBS`).
- Reports apply monotonically (`merge_jobs`): two refreshes may overlap (a GET and the updater, or
  two replicas), so a report read earlier can be applied after one read later. A job list never
  shrinks and never loses progress (`jobs_after_report`); the status follows ALLOWED_TRANSITIONS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from workflow_manager.domain.models import Job, JobStatus, Workflow, WorkflowStatus

TERMINAL_WORKFLOW_STATUSES = frozenset(
    {WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED}
)
ACTIVE_WORKFLOW_STATUSES = frozenset({WorkflowStatus.QUEUED, WorkflowStatus.RUNNING})

DONE_JOB_STATUSES = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.ABORTED_DEPS_FAILED,
        JobStatus.ABORTED_BY_USER,
    }
)
NOT_STARTED_JOB_STATUSES = frozenset(
    {JobStatus.CREATED, JobStatus.QUEUED, JobStatus.WAITING_FOR_DEPS, JobStatus.ABORTED_DEPS_FAILED}
)

# Allowed workflow status transitions: from -> the statuses it may move to (itself always allowed).
ALLOWED_TRANSITIONS: dict[WorkflowStatus, frozenset[WorkflowStatus]] = {
    WorkflowStatus.QUEUED: frozenset(
        {
            WorkflowStatus.RUNNING,
            WorkflowStatus.SUCCEEDED,
            WorkflowStatus.FAILED,
            WorkflowStatus.CANCELLED,
        }
    ),
    WorkflowStatus.RUNNING: frozenset(
        {WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED}
    ),
    WorkflowStatus.SUCCEEDED: frozenset(),
    WorkflowStatus.FAILED: frozenset(),
    WorkflowStatus.CANCELLED: frozenset(),
}


# A cancel stops an active workflow; a cancelled one is cancelled again as a no-op; these refuse it
# (reference 1.6: "Cancellation not allowed. Workflow ... is ...").
CANCEL_REFUSED_STATUSES = frozenset({WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED})


@dataclass(frozen=True)
class TerminalEffects:
    """What entering a terminal status records on a workflow, besides the status and `stopped_at`."""

    # The workflow counts as resolved by the user (nobody has to look at a success or at a cancel).
    resolves: bool = False
    # The execution's output becomes the workflow's output.
    records_output: bool = False
    # The job that failed becomes the workflow's `lastJob`.
    records_last_job: bool = False
    # The backend's reason replaces the recorded one; a user's cancel keeps the user's reason
    # (reference 3.6).
    takes_backend_reason: bool = True


TERMINAL_EFFECTS: dict[WorkflowStatus, TerminalEffects] = {
    WorkflowStatus.SUCCEEDED: TerminalEffects(resolves=True, records_output=True),
    WorkflowStatus.FAILED: TerminalEffects(records_last_job=True),
    WorkflowStatus.CANCELLED: TerminalEffects(resolves=True, takes_backend_reason=False),
}


def is_terminal(status: WorkflowStatus) -> bool:
    return status in TERMINAL_WORKFLOW_STATUSES


def transition_allowed(current: WorkflowStatus, new: WorkflowStatus) -> bool:
    return new == current or new in ALLOWED_TRANSITIONS[current]


def moves_back_from_terminal(current: WorkflowStatus, new: WorkflowStatus) -> bool:
    """The store's guard (reference 5.2): a terminal status never becomes a non-terminal one."""
    return is_terminal(current) and not is_terminal(new)


def job_is_done(status: JobStatus) -> bool:
    return status in DONE_JOB_STATUSES


def workflow_status_is_done(workflow: Workflow) -> bool:
    if workflow.status in (WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED):
        return True
    return workflow.status == WorkflowStatus.CANCELLED and workflow.resolved_by_user


def workflow_is_done(workflow: Workflow) -> bool:
    return (
        workflow_status_is_done(workflow)
        and not workflow.jobs_pending
        and all(job_is_done(j.status) for j in workflow.jobs)
    )


def is_active(workflow: Workflow) -> bool:
    """Whether the store lists the workflow among the active ones (the updater's and the sweep's
    work): its status is not terminal, or its jobs are still to be read after its end."""
    return workflow.status in ACTIVE_WORKFLOW_STATUSES or workflow.jobs_pending


# Workflow status from job statuses


class JobsMatch(StrEnum):
    ANY = "any"  # at least one job has one of the rule's statuses
    EVERY = "every"  # there are jobs, and every one has one of the rule's statuses


@dataclass(frozen=True)
class JobsRule:
    """`match` jobs have one of `job_statuses` -> the workflow is `workflow_status`."""

    match: JobsMatch
    job_statuses: frozenset[JobStatus]
    workflow_status: WorkflowStatus

    def holds_for(self, statuses: Sequence[JobStatus]) -> bool:
        if self.match == JobsMatch.ANY:
            return any(s in self.job_statuses for s in statuses)
        return bool(statuses) and all(s in self.job_statuses for s in statuses)


# The reference's UpdateWorkflowStatus rules (notes 4.7), in the order they are tried: a user's abort
# wins over a failure, a failure over a running job; one success among waiting jobs is not success.
WORKFLOW_STATUS_FROM_JOBS: tuple[JobsRule, ...] = (
    JobsRule(JobsMatch.ANY, frozenset({JobStatus.ABORTED_BY_USER}), WorkflowStatus.CANCELLED),
    JobsRule(
        JobsMatch.ANY, frozenset({JobStatus.FAILED, JobStatus.ABORTED_DEPS_FAILED}), WorkflowStatus.FAILED
    ),
    JobsRule(JobsMatch.ANY, frozenset({JobStatus.RUNNING}), WorkflowStatus.RUNNING),
    JobsRule(JobsMatch.EVERY, frozenset({JobStatus.SUCCEEDED}), WorkflowStatus.SUCCEEDED),
)
# When no rule holds (which the domain reads as "unchanged" once the workflow runs).
WORKFLOW_STATUS_WHEN_NO_JOBS_RULE_HOLDS = WorkflowStatus.QUEUED


def workflow_status_from_jobs(statuses: Sequence[JobStatus]) -> WorkflowStatus:
    """The status of the first rule of WORKFLOW_STATUS_FROM_JOBS that holds for `statuses`."""
    for rule in WORKFLOW_STATUS_FROM_JOBS:
        if rule.holds_for(statuses):
            return rule.workflow_status
    return WORKFLOW_STATUS_WHEN_NO_JOBS_RULE_HOLDS


# How far along a job is. With `ATTEMPT_WEIGHT` above the largest step, a job list's progress
# (`job_list_progress`) grows with every event of an append-only history: a new job adds one, a
# status moving forward adds its step, and a retry (the job starts over at `created` under a new
# event id, one attempt longer) adds more than the failed status it leaves.
JOB_STATUS_PROGRESS: dict[JobStatus, int] = {
    JobStatus.CREATED: 0,
    JobStatus.QUEUED: 1,
    JobStatus.WAITING_FOR_DEPS: 2,
    JobStatus.RUNNING: 3,
    **{status: 4 for status in DONE_JOB_STATUSES},
}
ATTEMPT_WEIGHT = 5


def job_list_progress(jobs: Sequence[Job]) -> int:
    return sum(
        1 + ATTEMPT_WEIGHT * len(job.attempts) + JOB_STATUS_PROGRESS[JobStatus(job.status)] for job in jobs
    )


def jobs_after_report(stored: Sequence[Job], reported: Sequence[Job]) -> list[Job]:
    """The jobs a workflow keeps after a report: the report's, unless it is older than what is
    stored (fewer jobs, or less progress), as a report read before another but applied after it is."""
    if len(reported) < len(stored) or job_list_progress(reported) < job_list_progress(stored):
        return list(stored)
    return list(reported)
