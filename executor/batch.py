"""The AWS Batch executor: every Task state of a `manager: batch` definition runs as one Batch job,
submitted up front with `dependsOn`, so Batch itself runs them in dependency order.

The reference's 2017 executor (notes 4.3-4.8), with its known defects fixed:

- Plan (`executor.batch_plan`): jobs in topological order over `Next` edges and Parallel branches.
- Submission: one SubmitJob per planned job, after all of them were built and checked (job queue,
  job definition, attempts, timeout, input size), so a caller's mistake submits nothing. A failure
  part-way terminates the jobs already submitted (the reference left them running, unknown to the
  service) and raises StartAbandoned with the domain error and the terminated jobs.
- `start(workflow)` returns the submitted jobs (Job.id = Batch job id, Job.state = state name) and
  leaves the workflow as it was; the domain records them on `workflow.jobs` and saves them. `report`
  and `cancel` read them back from there.
- Status (`report`): DescribeJobs in pages of DESCRIBE_JOBS_MAX_IDS; job status by the reference's
  mapping (`job_status_from_batch`), workflow status by the domain's rules
  (`workflow_manager.domain.status.workflow_status_from_jobs`).
  The reference's cancel wrote `aborted_by_user:` (lower case) while its mapping looked for
  `ABORTED_BY_USER`, so cancelled jobs showed as aborted_deps_failed; and a terminated running job
  (it has a start time) showed as failed. Here cancel writes `ABORTED_BY_USER: <reason>` and the
  mapping recognises the prefix in either case, started or not.
- Cancel: CancelJob for jobs not started (SUBMITTED, PENDING, RUNNABLE), TerminateJob for started
  ones (STARTING, RUNNING), dependents first so none of them sees a cancelled dependency as a failed
  one; a job that started between the look and the CancelJob (which ignores started jobs) is
  terminated in a second pass.
- Outputs: a job publishes its output to the results table (`executor.batch_results`); the
  report shows each job's output and input and the workflow's output (the final jobs' outputs).

Limits designed around: MAX_SUBMIT_JOBS_PER_SECOND (a token bucket shared by every workflow this
executor starts), MAX_SUBMIT_JOB_PAYLOAD_BYTES (the workflow input travels in a job's environment),
Batch job names (`batch_job_name`), and the plan's limits (20 dependencies, 1-10 attempts, timeouts
of at least 60 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from executor import aws_errors, batch_plan, batch_results, sfn_naming
from executor.batch_results import BatchResultsTable
from executor.interface import (
    ExecutionReport,
    StartAbandoned,
    StartedExecution,
    StartInterrupted,
    StartProgress,
    require_manager,
)
from executor.rate_limit import TokenBucket
from workflow_manager.domain.aws import (
    DESCRIBE_JOBS_MAX_IDS,
    MAX_SUBMIT_JOB_PAYLOAD_BYTES,
    MAX_SUBMIT_JOBS_PER_SECOND,
)
from workflow_manager.domain.errors import (
    BackendError,
    BackendUnavailable,
    InvalidInput,
    NotFound,
    WorkflowManagerError,
)
from workflow_manager.domain.models import (
    Job,
    JobAttempt,
    JobStatus,
    Manager,
    StateResource,
    StateResourceType,
    Workflow,
    WorkflowDefinition,
    WorkflowStatus,
)
from workflow_manager.domain.status import workflow_status_from_jobs

log = logging.getLogger(__name__)

# The workflow input goes into the first jobs' environment (`_BATCH_START`), within SubmitJob's
# payload limit (MAX_SUBMIT_JOB_PAYLOAD_BYTES); the rest is left for names, ids and other variables.
SUBMIT_JOB_PAYLOAD_RESERVE_BYTES = 6 * 1024
MAX_START_INPUT_BYTES = MAX_SUBMIT_JOB_PAYLOAD_BYTES - SUBMIT_JOB_PAYLOAD_RESERVE_BYTES

DEFAULT_QUEUE_NAME = "default"
# The prefix cancel() gives a job's reason, and by which the status mapping knows a user's cancel.
ABORTED_BY_USER_PREFIX = "ABORTED_BY_USER"
SUBMISSION_FAILED_PREFIX = "SUBMISSION_FAILED"
# Every submitted job carries its workflow's id in this tag: how a retried or resumed submission
# recognises the jobs it already submitted (SubmitJob takes no idempotency token), and how an
# operator finds a workflow's jobs in the Batch console.
WORKFLOW_ID_TAG = "workflow-manager:workflow-id"
# SubmitJob attempts (the submit client makes one attempt per call; see BatchExecutor._submit),
# and the first backoff, doubled after each attempt.
SUBMIT_ATTEMPTS = 5
SUBMIT_RETRY_BASE_SECONDS = 0.2
# A job of this workflow cannot be older than the workflow's record (saved before any SubmitJob),
# give or take the clocks of the replica and of Batch.
CLOCK_SKEW_MS = 5 * 60 * 1000

# Batch job status -> job status (the reference's taskStatus, notes 4.5). FAILED depends on why: see
# job_status_from_batch.
BATCH_STATUS_TO_JOB_STATUS: dict[str, JobStatus] = {
    "SUBMITTED": JobStatus.CREATED,
    "PENDING": JobStatus.WAITING_FOR_DEPS,
    "RUNNABLE": JobStatus.QUEUED,
    "STARTING": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "SUCCEEDED": JobStatus.SUCCEEDED,
}
NOT_STARTED_BATCH_STATUSES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE"})
STARTED_BATCH_STATUSES = frozenset({"STARTING", "RUNNING"})
DONE_BATCH_STATUSES = frozenset({"SUCCEEDED", "FAILED"})


def translate_aws_error(
    err: Exception, action: str, client_fault_is_input: bool = False
) -> WorkflowManagerError:
    """A botocore error as the domain's error. Batch answers every request mistake (unknown queue or
    job definition, bad name) with ClientException: the caller's fault when the request was built
    from the caller's definition (`client_fault_is_input`), a backend fault otherwise."""
    input_codes = ("ClientException",) if client_fault_is_input else ()
    return aws_errors.translate_aws_error(err, action, "AWS Batch", input_codes)


# Status mapping


def _epoch_ms(value: Any) -> datetime | None:
    # moto reports a job that never started with startedAt = 0 (1970); AWS omits it.
    if not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def job_status_from_batch(batch_job: Mapping[str, Any]) -> JobStatus:
    """The job status of a DescribeJobs job (the reference's taskStatus, fixed): FAILED is
    aborted_by_user when the reason starts with ABORTED_BY_USER (any case, started or not),
    aborted_deps_failed when the job never started (a dependency failed), failed otherwise.
    An unknown status reads as created."""
    status = batch_job.get("status")
    if status == "FAILED":
        reason = batch_job.get("statusReason") or ""
        if reason.upper().startswith(ABORTED_BY_USER_PREFIX):
            return JobStatus.ABORTED_BY_USER
        if _epoch_ms(batch_job.get("startedAt")) is None:
            return JobStatus.ABORTED_DEPS_FAILED
        return JobStatus.FAILED
    if status not in BATCH_STATUS_TO_JOB_STATUS:
        log.warning("unknown Batch job status %r of job %s", status, batch_job.get("jobId"))
        return JobStatus.CREATED
    return BATCH_STATUS_TO_JOB_STATUS[status]


def _attempts(batch_job: Mapping[str, Any]) -> list[JobAttempt]:
    attempts = []
    for attempt in batch_job.get("attempts") or []:
        container = attempt.get("container") or {}
        attempts.append(
            JobAttempt(
                started_at=_epoch_ms(attempt.get("startedAt")),
                stopped_at=_epoch_ms(attempt.get("stoppedAt")),
                container_instance_arn=container.get("containerInstanceArn") or "",
                task_arn=container.get("taskArn") or "",
                reason=container.get("reason") or attempt.get("statusReason") or "",
                exit_code=container.get("exitCode"),
            )
        )
    return attempts


# Names and queues


def job_name(namespace: str, state_name: str) -> str:
    """The reference's `{namespace}--{name}` (notes 4.4), named after the state (unique within a
    workflow, so two states running the same job definition are told apart), within Batch's rules:
    at most 128 letters, digits, hyphens and underscores, starting with a letter or digit."""
    return sfn_naming.batch_job_name(f"{namespace}{sfn_naming.NAME_SEPARATOR}{state_name}")


class BatchExecutor:
    def __init__(
        self,
        batch_client: Any,
        results: BatchResultsTable,
        *,
        default_queue: str,
        custom_queues: Mapping[str, str] | None = None,
        lookup_state_resource: Callable[[str, str], StateResource | None] | None = None,
        submit_limiter: TokenBucket | None = None,
        submit_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        """`default_queue` is the job queue (name or ARN) of the workflow queue `default` (the
        reference's DEFAULT_BATCH_QUEUE); `custom_queues` maps other workflow queues to job queues
        (its CUSTOM_BATCH_QUEUES)."""
        self._batch = batch_client
        # SubmitJob goes through a client that makes one attempt per call (`submit_client`, by
        # default `batch_client`), so that this executor's own retry can look before resubmitting.
        self._submitter = submit_client or batch_client
        self._sleep = sleep
        self._results = results
        self._default_queue = default_queue
        self._custom_queues = dict(custom_queues or {})
        self._lookup_state_resource = lookup_state_resource or (lambda _namespace, _name: None)
        self._limiter = submit_limiter or TokenBucket(MAX_SUBMIT_JOBS_PER_SECOND)

    # Building the submissions

    def job_queue(self, queue: str) -> str:
        """The Batch job queue of a workflow's `queue` (notes 4.4 step 7)."""
        if queue == DEFAULT_QUEUE_NAME:
            return self._default_queue
        job_queue = self._custom_queues.get(queue)
        if not job_queue:
            raise InvalidInput(f"error getting job queue: {queue}")
        return job_queue

    def _state_resource(self, namespace: str, state_name: str, state: dict[str, Any]) -> StateResource:
        """The job definition of a Task state: the URI of the state resource `(namespace, Resource)`
        when one exists, else `Resource` itself (a `batch:` prefix, as in Step Functions
        definitions, is dropped)."""
        resource = state.get("Resource")
        if not isinstance(resource, str) or not resource:
            raise InvalidInput(f"Task state '{state_name}' has no Resource")
        found = self._lookup_state_resource(namespace, resource)
        if found is not None and found.uri:
            return found
        return StateResource(
            name=resource,
            namespace=namespace,
            uri=resource.removeprefix(sfn_naming.BATCH_PREFIX),
            type=StateResourceType.JOB_DEFINITION_ARN,
        )

    def _submissions(self, workflow: Workflow) -> list[tuple[batch_plan.PlannedJob, StateResource, dict]]:
        plan = batch_plan.plan_jobs(workflow.workflow_definition.state_machine)
        if not plan:
            raise InvalidInput("a batch workflow needs at least one Task state reachable from StartAt")
        queue = self.job_queue(workflow.queue)
        start_input = workflow.input or "{}"
        if len(start_input.encode()) > MAX_START_INPUT_BYTES:
            raise InvalidInput(
                f"input is {len(start_input.encode())} bytes; a batch workflow's input travels in its "
                f"first jobs' environment and may be at most {MAX_START_INPUT_BYTES} bytes"
            )
        submissions = []
        for planned in plan:
            resource = self._state_resource(workflow.namespace, planned.state_name, planned.state)
            request: dict[str, Any] = {
                "jobName": job_name(workflow.namespace, planned.state_name),
                "jobDefinition": resource.uri,
                "jobQueue": queue,
            }
            attempts = batch_plan.job_attempts(planned.state_name, planned.state)
            if attempts is not None:
                request["retryStrategy"] = {"attempts": attempts}
            timeout = batch_plan.job_timeout_seconds(planned.state_name, planned.state)
            if timeout is not None:
                request["timeout"] = {"attemptDurationSeconds": timeout}
            submissions.append((planned, resource, request))
        return submissions

    def _environment(self, workflow: Workflow, state_name: str, dependency_ids: list[str]) -> list[dict]:
        environment = {
            batch_results.ENV_DEPENDENCIES: ",".join(dependency_ids),
            batch_results.ENV_WORKFLOW_ID: workflow.id,
            batch_results.ENV_WORKFLOW_STATE: state_name,
            batch_results.ENV_RESULTS_TABLE: self._results.table_name,
        }
        if not dependency_ids:
            environment[batch_results.ENV_START] = workflow.input or "{}"
        return [{"name": name, "value": value} for name, value in environment.items()]

    # Executor port

    def validate_definition(self, definition: WorkflowDefinition) -> None:
        """What Batch cannot run is a 400 when the definition is saved: no Task state, Catch, more
        than 20 dependencies for a job, an attempt timeout under Batch's minimum (Choice, Map and
        Wait states are refused by the domain's validation of a batch definition first); and
        another manager's definition (a router that routed wrongly)."""
        require_manager(definition, Manager.BATCH, "Batch")
        batch_plan.validate_batch_definition(definition.state_machine)

    def start(
        self, workflow: Workflow, progress: StartProgress | None = None, resuming: bool = False
    ) -> StartedExecution:
        """Submit one job per planned state, in plan order. `progress` hears of the jobs submitted
        so far before each SubmitJob. Resuming, the jobs recorded on the workflow are adopted, and
        the states after them are looked up in Batch (by job name and WORKFLOW_ID_TAG) until the
        first one that has no job: jobs are submitted one at a time in plan order, so an attempt
        that died submitted a prefix of the plan, of which its last records may be missing."""
        submissions = self._submissions(workflow)
        recorded = {job.state: job for job in workflow.jobs} if resuming else {}
        looking_up = resuming
        job_ids: dict[str, str] = {}
        submitted: list[Job] = []
        try:
            for planned, resource, request in submissions:
                dependency_ids = [job_ids[state] for state in planned.depends_on]
                request = {
                    **request,
                    "dependsOn": [{"jobId": job_id} for job_id in dependency_ids],
                    "containerOverrides": {
                        "environment": self._environment(workflow, planned.state_name, dependency_ids)
                    },
                    "tags": {WORKFLOW_ID_TAG: workflow.id},
                }
                job = recorded.get(planned.state_name)
                if job is None and looking_up:
                    job = self._find_submitted(workflow, planned.state_name, resource, request, job_ids)
                    looking_up = job is not None
                if job is None:
                    job = self._submit(
                        workflow,
                        planned.state_name,
                        resource,
                        request,
                        job_ids,
                        lambda: progress(list(submitted)) if progress is not None else None,
                    )
                job_ids[planned.state_name] = job.id
                submitted.append(job)
        except StartInterrupted as interrupted:
            if interrupted.terminate:
                self._abandon(workflow, submitted, interrupted.reason, ABORTED_BY_USER_PREFIX)
            interrupted.jobs = submitted
            raise
        except BackendUnavailable as unavailable:
            if not resuming:
                failed = self._abandoned(workflow, submitted, len(submissions), unavailable)
                raise failed from failed.__cause__
            # Finishing another attempt's start: what it submitted is kept for the next attempt,
            # rather than terminated because Batch is unavailable for a moment.
            interrupted = StartInterrupted(unavailable.message, terminate=False)
            interrupted.jobs = submitted
            raise interrupted from unavailable
        except WorkflowManagerError as translated:
            failed = self._abandoned(workflow, submitted, len(submissions), translated)
            raise failed from failed.__cause__
        return StartedExecution(jobs=submitted)

    def _abandoned(
        self, workflow: Workflow, submitted: list[Job], planned: int, translated: WorkflowManagerError
    ) -> WorkflowManagerError | StartAbandoned:
        """Terminate what a failed start submitted; the error to raise for it."""
        self._abandon(workflow, submitted, translated.message)
        error = type(translated)(
            f"{translated.message} ({len(submitted)} of {planned} jobs had been submitted and were terminated)"
        )
        error.__cause__ = translated.__cause__
        if not submitted:  # nothing ran: the plain domain error
            return error
        abandoned = StartAbandoned(error, submitted)
        abandoned.__cause__ = error
        return abandoned

    def _submit(
        self,
        workflow: Workflow,
        state_name: str,
        resource: StateResource,
        request: dict[str, Any],
        adopted: Mapping[str, str],
        before_each_attempt: Callable[[], None],
    ) -> Job:
        """One SubmitJob, retried here rather than by botocore (the submit client makes one
        attempt per call): SubmitJob takes no idempotency token, so before a retry that follows
        an answer that may have been lost (a timeout, a dropped connection, an AWS-side fault), the
        job is looked up first, and adopted when the first attempt did submit it. Throttling is
        retried without a look: a throttled request was not run. `before_each_attempt` is the
        start's progress report (it may stop the start)."""
        action = f"SubmitJob for state '{state_name}'"
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            before_each_attempt()
            self._limiter.acquire()
            try:
                response = self._submitter.submit_job(**request)
            except ClientError as err:
                code = aws_errors.error_code(err)
                status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
                throttled = code in aws_errors.THROTTLING_ERROR_CODES or status == 429
                answer_may_be_lost = not throttled and status >= 500
                if (not throttled and not answer_may_be_lost) or attempt == SUBMIT_ATTEMPTS:
                    raise translate_aws_error(err, action, client_fault_is_input=True) from err
            except BotoCoreError as err:
                if attempt == SUBMIT_ATTEMPTS:
                    raise translate_aws_error(err, action) from err
                answer_may_be_lost = True
            else:
                return Job(
                    id=response["jobId"],
                    state=state_name,
                    name=request["jobName"],
                    status=JobStatus.CREATED,
                    state_resource=resource,
                )
            self._sleep(SUBMIT_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
            if answer_may_be_lost:
                found = self._find_submitted(workflow, state_name, resource, request, adopted)
                if found is not None:
                    log.info(
                        "SubmitJob for %s of workflow %s had landed: adopted %s",
                        state_name,
                        workflow.id,
                        found.id,
                    )
                    return found
        raise AssertionError("unreachable")

    def _find_submitted(
        self,
        workflow: Workflow,
        state_name: str,
        resource: StateResource,
        request: dict[str, Any],
        adopted: Mapping[str, str],
    ) -> Job | None:
        """The job an earlier SubmitJob of this request created, if any: listed by job name in
        the job queue, told apart by WORKFLOW_ID_TAG. Two states whose names map to one job name
        were submitted in plan order, so the oldest job not adopted yet is this state's."""
        taken = set(adopted.values())
        created_after = workflow.created_at.timestamp() * 1000 - CLOCK_SKEW_MS if workflow.created_at else 0
        try:
            candidates = [
                summary["jobId"]
                for page in self._batch.get_paginator("list_jobs").paginate(
                    jobQueue=request["jobQueue"],
                    filters=[{"name": "JOB_NAME", "values": [request["jobName"]]}],
                )
                for summary in page.get("jobSummaryList", [])
                if summary["jobId"] not in taken and (summary.get("createdAt") or 0) >= created_after
            ]
        except (ClientError, BotoCoreError) as err:
            raise translate_aws_error(err, f"ListJobs for state '{state_name}'") from err
        ours = [
            job
            for job in self._describe(candidates).values()
            if (job.get("tags") or {}).get(WORKFLOW_ID_TAG) == workflow.id
            and job.get("jobName") == request["jobName"]
        ]
        if not ours:
            return None
        first = min(ours, key=lambda job: job.get("createdAt") or 0)
        return Job(
            id=first["jobId"],
            state=state_name,
            name=request["jobName"],
            status=JobStatus.CREATED,
            state_resource=resource,
        )

    def _abandon(
        self, workflow: Workflow, submitted: list[Job], reason: str, prefix: str = SUBMISSION_FAILED_PREFIX
    ) -> None:
        """Compensate a start that failed part-way (or was cancelled): terminate what was
        submitted (TerminateJob cancels a job that has not started and stops one that has),
        dependents first."""
        for job in reversed(submitted):
            try:
                self._batch.terminate_job(jobId=job.id, reason=f"{prefix}: {reason}"[:1024])
            except (ClientError, BotoCoreError):
                log.exception("could not terminate job %s of workflow %s", job.id, workflow.id)

    def _describe(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        described: dict[str, dict[str, Any]] = {}
        try:
            for start in range(0, len(job_ids), DESCRIBE_JOBS_MAX_IDS):
                page = self._batch.describe_jobs(jobs=list(job_ids[start : start + DESCRIBE_JOBS_MAX_IDS]))
                for batch_job in page.get("jobs", []):
                    described[batch_job["jobId"]] = batch_job
        except (ClientError, BotoCoreError) as err:
            raise translate_aws_error(err, "DescribeJobs") from err
        return described

    def report(
        self, workflow: Workflow, include_jobs: bool = True, include_status: bool = True
    ) -> ExecutionReport:
        # A Batch workflow's status is its jobs' (DescribeJobs gives both): include_status changes
        # nothing.
        if not workflow.jobs:
            return ExecutionReport(found=False)
        described = self._describe([job.id for job in workflow.jobs])
        if not described:
            return ExecutionReport(found=False)
        jobs = [self._job_from_batch(job, described.get(job.id)) for job in workflow.jobs]
        by_state = {job.state: job for job in jobs}
        plan = self._plan_of(workflow)
        self._fill_outputs(jobs, workflow.jobs)
        self._fill_inputs(workflow, plan, by_state)

        status = workflow_status_from_jobs([job.status for job in jobs])
        report = ExecutionReport(found=True, status=status, jobs=jobs if include_jobs else None)
        if status in (WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
            stops = [job.stopped_at for job in jobs if job.stopped_at is not None]
            report.stopped_at = max(stops) if stops else None
        if status == WorkflowStatus.SUCCEEDED:
            finals = [by_state[s] for s in batch_plan.final_jobs(plan) if s in by_state] or jobs[-1:]
            report.output = batch_results.dependents_input("", [job.output or None for job in finals])
        elif status == WorkflowStatus.FAILED:
            failed = next((j for j in jobs if j.status == JobStatus.FAILED), None) or next(
                j for j in jobs if j.status == JobStatus.ABORTED_DEPS_FAILED
            )
            report.last_job = failed
            report.status_reason = _failure_reason(failed)
        return report

    def _plan_of(self, workflow: Workflow) -> list[batch_plan.PlannedJob]:
        try:
            return batch_plan.plan_jobs(workflow.workflow_definition.state_machine)
        except InvalidInput:
            return []

    def _job_from_batch(self, recorded: Job, batch_job: dict[str, Any] | None) -> Job:
        if batch_job is None:  # not (yet, or any more) known to Batch: keep what was recorded
            return recorded
        container = batch_job.get("container") or {}
        return Job(
            id=recorded.id,
            state=recorded.state,
            name=batch_job.get("jobName") or recorded.name,
            status=job_status_from_batch(batch_job),
            input=recorded.input,
            output=recorded.output,
            status_reason=batch_job.get("statusReason") or "",
            container=container.get("taskArn") or "",
            queue=batch_job.get("jobQueue") or "",
            created_at=_epoch_ms(batch_job.get("createdAt")),
            started_at=_epoch_ms(batch_job.get("startedAt")),
            stopped_at=_epoch_ms(batch_job.get("stoppedAt")),
            attempts=_attempts(batch_job),
            state_resource=recorded.state_resource,
        )

    def _fill_outputs(self, jobs: list[Job], recorded: list[Job]) -> None:
        """Outputs of succeeded jobs, read from the results table once: a job's output is final
        when it succeeded, so one already recorded is kept."""
        already = {job.id: job.output for job in recorded if job.status == JobStatus.SUCCEEDED and job.output}
        missing = [j.id for j in jobs if j.status == JobStatus.SUCCEEDED and j.id not in already]
        published = self._results.outputs(missing) if missing else {}
        for job in jobs:
            if job.status == JobStatus.SUCCEEDED:
                job.output = already.get(job.id) or published.get(job.id, "")

    def _fill_inputs(self, workflow: Workflow, plan: list[batch_plan.PlannedJob], by_state: dict[str, Job]):
        """Each job's input as `workflow-manager job-input` gave it, once it is known: the workflow
        input for a first job, its dependencies' outputs once they all succeeded."""
        for planned in plan:
            job = by_state.get(planned.state_name)
            if job is None or job.input:
                continue
            dependencies = [by_state.get(state) for state in planned.depends_on]
            if not dependencies:
                job.input = workflow.input or "{}"
            elif all(dep is not None and dep.status == JobStatus.SUCCEEDED for dep in dependencies):
                job.input = batch_results.dependents_input("", [dep.output or None for dep in dependencies])

    def cancel(self, workflow: Workflow, reason: str) -> None:
        if not workflow.jobs:
            raise NotFound(f"no Batch jobs for workflow {workflow.id}")
        batch_reason = f"{ABORTED_BY_USER_PREFIX}: {reason}"
        ids = [job.id for job in workflow.jobs]
        errors: list[str] = []
        cancelled: list[str] = []
        described = self._describe(ids)
        # Dependents first: a job waiting for a dependency that is cancelled before it would fail
        # as aborted_deps_failed instead of aborted_by_user.
        for job_id in reversed(ids):
            status = (described.get(job_id) or {}).get("status")
            if status in NOT_STARTED_BATCH_STATUSES:
                if self._stop_job("cancel_job", job_id, batch_reason, errors):
                    cancelled.append(job_id)
            elif status in STARTED_BATCH_STATUSES:
                self._stop_job("terminate_job", job_id, batch_reason, errors)
        if cancelled:
            # CancelJob leaves a job that started meanwhile running: terminate those.
            for job_id, batch_job in self._describe(cancelled).items():
                if batch_job.get("status") in STARTED_BATCH_STATUSES:
                    self._stop_job("terminate_job", job_id, batch_reason, errors)
        if errors:
            raise BackendError(f"{len(errors)} of {len(ids)} jobs were not cancelled: {'; '.join(errors)}")

    def _stop_job(self, operation: str, job_id: str, reason: str, errors: list[str]) -> bool:
        try:
            getattr(self._batch, operation)(jobId=job_id, reason=reason)
            return True
        except (ClientError, BotoCoreError) as err:
            errors.append(f"{job_id}: {translate_aws_error(err, operation).message}")
            return False

    def check_health(self) -> None:
        try:
            self._batch.describe_job_queues(maxResults=1)
        except (ClientError, BotoCoreError) as err:
            raise BackendUnavailable(f"AWS Batch is unreachable: {err}") from err


def _failure_reason(job: Job) -> str:
    """Why a failed workflow failed: its failed job, with Batch's reason or the exit code."""
    detail = job.status_reason
    last = job.attempts[-1] if job.attempts else None
    if last is not None:
        parts = [last.reason] if last.reason and last.reason != detail else []
        if last.exit_code is not None:
            parts.append(f"exit code {last.exit_code}")
        detail = "; ".join(p for p in (detail, *parts) if p)
    what = "failed" if job.status == JobStatus.FAILED else "was not run: a dependency failed"
    return f"job '{job.state}' {what}" + (f": {detail}" if detail else "")
