"""Status rules as data (workflow_manager/domain/status.py): how a report's job list is applied."""

from __future__ import annotations

from workflow_manager.domain.models import Job, JobAttempt, JobStatus
from workflow_manager.domain.status import jobs_after_report


def job(job_id: str, state: str, status: JobStatus, attempts: int = 0) -> Job:
    return Job(id=job_id, state=state, status=status, attempts=[JobAttempt() for _ in range(attempts)])


def test_a_newer_report_replaces_the_jobs():
    stored = [job("2", "build", JobStatus.RUNNING)]
    reported = [job("2", "build", JobStatus.SUCCEEDED), job("7", "deploy", JobStatus.RUNNING)]
    assert jobs_after_report(stored, reported) == reported


def test_an_older_report_with_fewer_jobs_keeps_the_stored_ones():
    stored = [job("2", "build", JobStatus.SUCCEEDED), job("7", "deploy", JobStatus.SUCCEEDED)]
    assert jobs_after_report(stored, [job("2", "build", JobStatus.RUNNING)]) == stored


def test_an_older_report_of_the_same_jobs_keeps_their_progress():
    stored = [job("2", "build", JobStatus.SUCCEEDED)]
    assert jobs_after_report(stored, [job("2", "build", JobStatus.RUNNING)]) == stored


def test_a_retry_is_progress_although_the_job_starts_over_under_a_new_id():
    # Step Functions: the failed try becomes an attempt, the job is `created` again under the
    # Scheduled event's id.
    stored = [job("2", "build", JobStatus.FAILED)]
    retried = [job("9", "build", JobStatus.CREATED, attempts=1)]
    assert jobs_after_report(stored, retried) == retried
    assert jobs_after_report(retried, stored) == retried
