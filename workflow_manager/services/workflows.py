"""The workflow use cases: start, resume, cancel, resolve, get, list and refresh, over the store and
executor ports. Rules that are data live in `workflow_manager.domain.status`; definition rules in
`workflow_manager.domain.definitions`; input rules in `workflow_manager.domain.inputs`.

Pitfalls this module guards against:
- Save before start: a workflow is saved (with its start claim) before its execution starts, so no
  execution runs unknown to the service; when the start fails while the caller waits, the record
  is deleted before the error reaches the caller. The start itself runs on the StartRunner
  (`workflow_manager.services.starts`), which outlives the request when it must.
- Read-modify-write on workflows goes through `_mutate_workflow`, which retries on a concurrent
  update (the API and the background updater write the same records).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from executor.interface import ExecutionReport, Executor, StartAbandoned
from store.interface import MAX_LIST_LIMIT, Store, WorkflowPage, WorkflowQuery
from workflow_manager.domain import definitions, inputs, states
from workflow_manager.domain.access import ANONYMOUS, Principal, require_namespace
from workflow_manager.domain.errors import (
    BackendUnavailable,
    ConcurrentModification,
    Conflict,
    InvalidInput,
    NotFound,
    WorkflowManagerError,
)
from workflow_manager.domain.models import (
    Job,
    Workflow,
    WorkflowStatus,
    idempotent_workflow_id,
    new_id,
    utc_now,
)
from workflow_manager.domain.status import (
    CANCEL_REFUSED_STATUSES,
    NOT_STARTED_JOB_STATUSES,
    TERMINAL_EFFECTS,
    is_terminal,
    jobs_after_report,
    transition_allowed,
    workflow_is_done,
)
from workflow_manager.logcontext import about_workflow
from workflow_manager.services.starts import START_LEASE, START_WAIT_SECONDS, StartRunner

log = logging.getLogger(__name__)

# How long a non-terminal workflow may have no execution (or no Batch jobs) before it is declared
# failed (reference 3.6: durationToRetryDescribeExecutions): it covers the moment between the save
# and StartExecution, and DescribeExecution's eventual consistency right after it. Counted from the
# record's last update, so a running workflow whose execution vanished long after it was last seen
# (deleted, or an emulator restarted) is failed at its next check.
ZOMBIE_WINDOW = timedelta(minutes=5)
# How many GETs may read an execution's history at once. Every request is served by one pool of
# threads (a2wsgi's 10, in each serving process), and a large workflow's history takes seconds to
# read: unbounded, ten such GETs would hold every thread and starve the rest (even /_health). Past
# the limit, a GET answers from the store (the updater keeps it current) and an explicit
# `fetchHistory=true` is 503, to be retried.
MAX_CONCURRENT_HISTORY_READS = 4
# A workflow someone watches (GET, the console) is refreshed from the backend at most once per
# this long in each process, however many watch it: the others get the record as just refreshed.
WATCHED_REFRESH_SECONDS = 1.0
# How long an Idempotency-Key returns the workflow it started (CONTRACT 9.2).
IDEMPOTENCY_WINDOW = timedelta(hours=24)
EXECUTION_GONE_REASON = "execution not found: the backend has no execution for this workflow"
# Attempts of a read-modify-write before a concurrent-update conflict reaches the caller.
MUTATE_ATTEMPTS = 5


# A metrics scrape reads the status of at most this many active workflows (one store read each,
# so that a scrape stays cheap however many run); the rest are counted under ACTIVE_STATUS_UNREAD.
MAX_ACTIVE_STATUS_READS = 1000
ACTIVE_STATUS_UNREAD = "unread"
# How long a read of an ended workflow whose jobs are pending waits for a turn among the history
# reads (MAX_CONCURRENT_HISTORY_READS) before it answers with the record as stored.
PENDING_JOBS_WAIT_SECONDS = 1.0
# Ended workflows (by an event) whose jobs are still to be read are counted under this status.
ACTIVE_STATUS_JOBS_PENDING = "jobs_pending"


class WorkflowObserver(Protocol):
    """What the service tells the metrics (workflow_manager.telemetry implements it)."""

    def workflow_finished(self, status: str, stopped_at: datetime | None, recorded_at: datetime) -> None:
        """A workflow's terminal status, reported by its backend as stopped at `stopped_at`, is
        being recorded at `recorded_at`."""


class _NoObserver:
    def workflow_finished(self, status: str, stopped_at: datetime | None, recorded_at: datetime) -> None:
        return None


@dataclass(frozen=True)
class StartRequest:
    """A start as a request states it. `input` and `tags` are whatever JSON the caller sent (the
    input rules accept several forms and say what is wrong with the rest)."""

    definition_name: str
    definition_version: int | None = None
    namespace: str = ""
    queue: str = ""
    input: Any = None
    tags: Any = None
    idempotency_key: str | None = None
    # When the request is answered 503 (time.monotonic()): a start that cannot finish by then is
    # answered `queued` and finished in the background, or, when even the save took that long,
    # undone (the caller will see a 503: it must be told the truth, that nothing started).
    deadline: float | None = None


class StatusApplied(StrEnum):
    """What `WorkflowService.apply_status` did with an event's status."""

    APPLIED = "applied"  # saved (or nothing to change: an old or repeated event)
    ENDED = "ended"  # the workflow ended by it: its jobs are to be read (jobs_pending)
    STARTING = "starting"  # left alone: the workflow's start is not recorded yet


class WorkflowService:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        default_namespace: str,
        zombie_window: timedelta = ZOMBIE_WINDOW,
        max_concurrent_history_reads: int = MAX_CONCURRENT_HISTORY_READS,
        start_lease: timedelta = START_LEASE,
        start_wait_seconds: float = START_WAIT_SECONDS,
        observer: WorkflowObserver | None = None,
    ):
        self._observer = observer or _NoObserver()
        self._history_reads = (
            threading.BoundedSemaphore(max_concurrent_history_reads) if max_concurrent_history_reads else None
        )
        self._store = store
        self._executor = executor
        self._default_namespace = default_namespace
        self._zombie_window = zombie_window
        self._watched = _WatchedRefreshes(WATCHED_REFRESH_SECONDS)
        self._starts = StartRunner(
            store, executor, self._mutate_workflow, lease=start_lease, wait_seconds=start_wait_seconds
        )

    # Start, resume

    def start(self, request: StartRequest, actor: Principal = ANONYMOUS) -> Workflow:
        """Save and start a workflow. `actor` must be allowed to operate in its namespace."""
        if not request.definition_name:
            raise InvalidInput("workflowDefinition.name is required")
        version = request.definition_version
        if version is None or version < 0:
            definition = self._store.latest_workflow_definition(request.definition_name)
        else:
            definition = self._store.get_workflow_definition(request.definition_name, version)
        namespace = request.namespace or self._default_namespace
        definitions.validate_aws_name("namespace", namespace)
        require_namespace(actor, namespace)
        queue = request.queue or "default"
        tags = {**definition.default_tags, **inputs.string_tags(request.tags)}
        # The definition's tags count too: the workflow carries the merged map.
        inputs.check_tag_count("tags", tags)
        workflow = Workflow(
            id=new_id(),
            workflow_definition=definition,
            namespace=namespace,
            queue=queue,
            input=inputs.input_text(request.input),
            tags=tags,
        )
        if not request.idempotency_key:
            self._save_and_start(workflow, deadline=request.deadline)
            return workflow
        return self._start_once(workflow, actor.name, request.idempotency_key, request.deadline)

    def _start_once(self, workflow: Workflow, caller: str, key: str, deadline: float | None) -> Workflow:
        """Start the workflow an Idempotency-Key names, or return the one it already started. The
        id comes from the key, so of concurrent repeats exactly one save succeeds."""
        workflow.id = idempotent_workflow_id(caller, key)
        try:
            existing = self._store.get_workflow(workflow.id)
        except NotFound:
            try:
                self._save_and_start(workflow, deadline=deadline)
                return workflow
            except Conflict:
                try:  # a concurrent repeat saved it first; or the start itself conflicted
                    existing = self._store.get_workflow(workflow.id)
                except NotFound:
                    raise
        return self._repeat_of(existing, workflow, key)

    @staticmethod
    def _repeat_of(existing: Workflow, requested: Workflow, key: str) -> Workflow:
        same_request = (
            existing.workflow_definition.name == requested.workflow_definition.name
            and existing.workflow_definition.version == requested.workflow_definition.version
            and (existing.namespace, existing.queue, existing.input, existing.tags)
            == (requested.namespace, requested.queue, requested.input, requested.tags)
        )
        if not same_request:
            raise Conflict(
                f"Idempotency-Key '{key}' was used for another request, which started workflow {existing.id}"
            )
        if existing.created_at is not None and utc_now() - existing.created_at > IDEMPOTENCY_WINDOW:
            raise Conflict(
                f"Idempotency-Key '{key}' started workflow {existing.id} more than 24 hours ago; use a new key"
            )
        return existing

    @about_workflow
    def _save_and_start(
        self, workflow: Workflow, claim: Callable[[], None] | None = None, deadline: float | None = None
    ) -> None:
        """Save, then start. When the start fails before anything ran, the record is deleted; when
        an executor had already submitted work (Batch jobs, terminated again), the workflow is
        kept as failed with the reason, so nothing ever ran unknown to the service. `claim` runs
        between the save and the start (a resume links itself to the original there); when it
        raises, the saved record is deleted and nothing starts. A start that does not finish
        within the wait (see StartRunner) goes on in the background: the workflow is returned
        `queued`, and its record is brought up to date as the start proceeds."""
        workflow.start_claim = self._starts.new_claim()
        self._store.save_workflow(workflow)
        if claim is not None:
            try:
                claim()
            except BaseException:
                self._delete_stray(workflow)
                raise
        wait_seconds = self._starts.wait_seconds(deadline)
        if wait_seconds <= 0:
            # The save took the request's whole time: it is answered 503, so nothing may start.
            self._delete_stray(workflow)
            raise BackendUnavailable(
                f"the request ran out of time before workflow {workflow.id} started; nothing was started"
            )
        try:
            finished = self._starts.start(workflow, wait_seconds)
        except StartAbandoned as abandoned:
            err = abandoned.error
            self._record_failed_start(workflow, abandoned.jobs, err)
            raise type(err)(f"workflow {workflow.id} failed to start: {err.message}") from err
        except BaseException:
            self._delete_stray(workflow)
            raise
        if not finished:
            # Answered `queued`, with the jobs its start has recorded so far.
            try:
                workflow.jobs = self._store.get_workflow(workflow.id).jobs
            except WorkflowManagerError as err:
                log.warning("workflow %s: could not read the jobs submitted so far: %s", workflow.id, err)

    def _delete_stray(self, workflow: Workflow) -> None:
        try:
            self._store.delete_workflow(workflow.id)
        except WorkflowManagerError:
            log.exception("failed to delete stray workflow %s", workflow.id)

    def _record_failed_start(self, workflow: Workflow, jobs: list[Job], err: WorkflowManagerError) -> None:
        def fail(current: Workflow) -> None:
            current.jobs = jobs
            current.start_claim = None
            current.status = WorkflowStatus.FAILED
            current.status_reason = err.message
            current.stopped_at = utc_now()

        saved = self._mutate_workflow(workflow.id, fail)
        workflow.jobs = jobs
        workflow.status, workflow.status_reason = saved.status, saved.status_reason

    @about_workflow
    def resume(self, workflow_id: str, start_at: str, actor: Principal = ANONYMOUS) -> Workflow:
        """Start a new workflow, a retry of `workflow_id`, from its top-level state `start_at`, with
        the input that state's job had (the reference's RetryWorkflow)."""
        original = self._with_jobs(self._store.get_workflow(workflow_id))
        require_namespace(actor, original.namespace)
        if not workflow_is_done(original):
            raise Conflict(f"Workflow {workflow_id} active: {original.status}")
        self._check_no_active_descendants(original)
        state_machine = original.workflow_definition.state_machine
        if start_at not in states.top_level_state_names(state_machine):
            raise InvalidInput(f"Invalid StartAt state {start_at}")
        job = self._job_to_resume_from(original, start_at)
        resumed_definition = original.workflow_definition.copy()
        resumed_definition.state_machine = definitions.prune_unreachable_states(state_machine, start_at)
        retry = Workflow(
            id=new_id(),
            workflow_definition=resumed_definition,
            namespace=original.namespace,
            queue=original.queue,
            input=job.input or "{}",
            tags=dict(original.tags),
            retry_for=original.id,
        )

        def link(current: Workflow) -> None:
            # The claim: one conditional write (the store's revision check) that links the retry,
            # made only while no other retry of this workflow is active. Of concurrent resumes the
            # first to write wins; the others re-read, see its retry and get 409. The retry is saved
            # before it is linked, so a linked retry always has a record (a crash in between
            # leaves a queued record without an execution, which the updater fails).
            self._check_no_active_descendants(current)
            current.retries.append(retry.id)

        try:
            self._save_and_start(retry, claim=lambda: self._mutate_workflow(original.id, link))
        except BaseException:
            self._unlink_if_gone(original.id, retry.id)
            raise
        return retry

    def _unlink_if_gone(self, workflow_id: str, retry_id: str) -> None:
        """After a failed resume: a retry whose record was deleted (nothing ran) is no retry."""
        try:
            self._store.get_workflow(retry_id)
            return  # kept (failed, with the reason): the link is true
        except NotFound:
            pass

        def unlink(current: Workflow) -> None:
            if retry_id in current.retries:
                current.retries.remove(retry_id)

        try:
            self._mutate_workflow(workflow_id, unlink)
        except WorkflowManagerError:
            log.exception("could not unlink the failed retry %s from workflow %s", retry_id, workflow_id)

    def _check_no_active_descendants(self, workflow: Workflow) -> None:
        pending = list(workflow.retries)
        while pending:
            child_id = pending.pop()
            try:
                child = self._with_jobs(self._store.get_workflow(child_id))
            except NotFound:
                continue
            if not workflow_is_done(child):
                raise Conflict(f"Cannot resume workflow {workflow.id} because it has active descendants")
            pending.extend(child.retries)

    def _job_to_resume_from(self, workflow: Workflow, start_at: str):
        if workflow.last_job is not None and workflow.last_job.state == start_at:
            job = workflow.last_job
        else:
            jobs = workflow.jobs
            if not jobs:
                jobs = self._executor.report(workflow, include_jobs=True).jobs or []
            job = next((j for j in jobs if j.state == start_at), None)
        if job is None:
            raise InvalidInput(f"No job found for StartAt {start_at}")
        if job.status in NOT_STARTED_JOB_STATUSES:
            raise InvalidInput(
                f"Job {job.id} for StartAt {start_at} was not started for Workflow: {workflow.id}."
                " Could not infer input"
            )
        return job

    # Cancel, resolve

    @about_workflow
    def cancel(self, workflow_id: str, reason: str, actor: Principal = ANONYMOUS) -> None:
        workflow = self._store.get_workflow(workflow_id)
        require_namespace(actor, workflow.namespace)
        if workflow.status in CANCEL_REFUSED_STATUSES:
            raise InvalidInput(f"Cancellation not allowed. Workflow {workflow_id} is {workflow.status}")
        if workflow.status == WorkflowStatus.CANCELLED:
            return
        try:
            self._executor.cancel(workflow, reason)
        except NotFound:
            # No execution (a crash before the start, or it vanished): nothing runs, so the
            # record is cancelled as asked.
            log.info("cancel of workflow %s: the backend has no execution for it", workflow_id)
        report = self._executor.report(workflow, include_jobs=True)

        def record(current: Workflow) -> None:
            if report.found:
                self._apply_report(current, report)
            if current.status != WorkflowStatus.CANCELLED and is_terminal(current.status):
                return
            current.status = WorkflowStatus.CANCELLED
            current.status_reason = reason
            current.resolved_by_user = TERMINAL_EFFECTS[WorkflowStatus.CANCELLED].resolves
            current.stopped_at = current.stopped_at or utc_now()

        updated = self._mutate_workflow(workflow_id, record)
        if updated.status != WorkflowStatus.CANCELLED:
            # The execution finished before the stop reached it.
            raise InvalidInput(f"Cancellation not allowed. Workflow {workflow_id} is {updated.status}")

    @about_workflow
    def resolve(self, workflow_id: str, actor: Principal = ANONYMOUS) -> None:
        require_namespace(actor, self._store.get_workflow(workflow_id).namespace)

        def mark(workflow: Workflow) -> None:
            if workflow.resolved_by_user:
                raise Conflict(f"workflow {workflow_id} already resolved")
            workflow.resolved_by_user = True

        self._mutate_workflow(workflow_id, mark)

    # Reading and refreshing

    @about_workflow
    def get(self, workflow_id: str, fetch_history: bool = False) -> Workflow:
        workflow = self._store.get_workflow(workflow_id)
        if workflow.jobs_pending and not fetch_history:
            # Ended (by its event) with its jobs still to be read: a client that waits for the end
            # and then reads the jobs gets all of them, so they are read now, whoever asked last.
            return self._with_jobs(workflow)
        if workflow_is_done(workflow) and not fetch_history:
            return workflow
        if not fetch_history and not self._watched.claim(workflow_id):
            return workflow  # refreshed a moment ago, or being refreshed for another watcher
        try:
            return self._get_refreshed(workflow, fetch_history)
        finally:
            if not fetch_history:
                self._watched.done(workflow_id)

    def _with_jobs(self, workflow: Workflow) -> Workflow:
        """`workflow`, with its jobs read when they are pending (its end came from an event). Waits
        up to PENDING_JOBS_WAIT_SECONDS for a turn among the history reads; when there is none, or
        the backend fails, the record as stored (the deferred refresh or the sweep reads them)."""
        if not workflow.jobs_pending:
            return workflow
        if self._history_reads is not None and not self._history_reads.acquire(
            timeout=PENDING_JOBS_WAIT_SECONDS
        ):
            return workflow
        try:
            return self.refresh(workflow.id)
        except WorkflowManagerError as err:
            log.warning("the pending jobs of workflow %s could not be read: %s", workflow.id, err.message)
            return workflow
        finally:
            if self._history_reads is not None:
                self._history_reads.release()

    def _get_refreshed(self, workflow: Workflow, fetch_history: bool) -> Workflow:
        workflow_id = workflow.id
        if self._history_reads is None or not self._history_reads.acquire(blocking=False):
            if fetch_history:
                raise BackendUnavailable(
                    f"too many execution histories are being read at once; retry workflow {workflow_id} shortly"
                )
            return workflow  # as stored: the background updater keeps it current
        try:
            return self.refresh(workflow_id)
        except BackendUnavailable as err:
            if fetch_history:
                raise
            # The backend is throttled or unreachable for a moment: the record as stored is the
            # answer (the updater brings it up to date), rather than a 503 for a read.
            log.warning("GET of workflow %s answered from the store: %s", workflow_id, err.message)
            return workflow
        finally:
            self._history_reads.release()

    def list(self, query: WorkflowQuery) -> WorkflowPage:
        if not query.workflow_definition_name:
            raise InvalidInput("query parameter 'workflowDefinitionName' must be specified")
        if not 1 <= query.limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}, not {query.limit}")
        return self._store.list_workflows(query)

    def active_workflow_ids(self) -> list[str]:
        return self._store.list_active_workflow_ids()

    def count_active_by_status(self, max_reads: int = MAX_ACTIVE_STATUS_READS) -> dict[str, int]:
        """The active workflows by status, as stored (the backend is not asked): one store read per
        workflow, up to `max_reads`; the rest are counted as ACTIVE_STATUS_UNREAD, and ended ones
        whose jobs are still to be read as ACTIVE_STATUS_JOBS_PENDING."""
        ids = self._store.list_active_workflow_ids()
        counts: dict[str, int] = {}
        for workflow_id in ids[:max_reads]:
            try:
                workflow = self._store.get_workflow(workflow_id)
            except NotFound:
                continue  # deleted since it was listed
            status = ACTIVE_STATUS_JOBS_PENDING if workflow.jobs_pending else str(workflow.status)
            counts[status] = counts.get(status, 0) + 1
        if len(ids) > max_reads:
            counts[ACTIVE_STATUS_UNREAD] = len(ids) - max_reads
        return counts

    def is_done(self, workflow_id: str) -> bool:
        """Whether the stored workflow is done (reference 2.7), without asking the backend; a
        workflow that no longer exists is done."""
        try:
            return workflow_is_done(self._store.get_workflow(workflow_id))
        except NotFound:
            return True

    @about_workflow
    def refresh(self, workflow_id: str) -> Workflow:
        """Bring a workflow's status and jobs in line with its execution, and save what changed. A
        workflow still starting is left to its start; one whose start was left unfinished (its
        claim expired: the replica starting it died) is taken over and finished. One whose status
        came from its execution's end event has only its jobs read."""
        workflow = self._store.get_workflow(workflow_id)
        if workflow.start_claim is not None:
            if workflow.start_claim.expired(utc_now()):
                self._starts.take_over(workflow)
            return workflow
        report = self._executor.report(workflow, include_jobs=True, include_status=not workflow.jobs_pending)
        return self._mutate_workflow(workflow_id, lambda wf: self._apply_report(wf, report))

    @about_workflow
    def apply_status(self, workflow_id: str, report: ExecutionReport) -> StatusApplied:
        """Apply the status an event told (`report`, without jobs) with one conditional write,
        asking the backend nothing. A workflow that ends this way keeps `jobs_pending` until a
        refresh reads its jobs (the store lists it as active meanwhile). A workflow still
        starting is not changed: its start records it first."""
        outcome = StatusApplied.APPLIED

        def apply(workflow: Workflow) -> None:
            nonlocal outcome
            outcome = StatusApplied.APPLIED
            if workflow.start_claim is not None:
                outcome = StatusApplied.STARTING
                return
            was_terminal = is_terminal(workflow.status)
            self._apply_report(workflow, report)
            if is_terminal(workflow.status) and not was_terminal:
                workflow.jobs_pending = True
                outcome = StatusApplied.ENDED

        self._mutate_workflow(workflow_id, apply)
        return outcome

    def _apply_report(self, workflow: Workflow, report: ExecutionReport) -> None:
        if not report.found:
            workflow.jobs_pending = False  # no execution, no jobs to read
            if (
                not is_terminal(workflow.status)
                and workflow.last_updated is not None
                and utc_now() - workflow.last_updated > self._zombie_window
            ):
                workflow.status = WorkflowStatus.FAILED
                workflow.status_reason = EXECUTION_GONE_REASON
                workflow.stopped_at = workflow.stopped_at or utc_now()
            return
        if report.jobs is not None:
            workflow.jobs = jobs_after_report(workflow.jobs, report.jobs)
            if workflow.jobs_pending:
                # The end came from an event; its effects that need the jobs apply now.
                workflow.jobs_pending = False
                effects = TERMINAL_EFFECTS.get(workflow.status)
                if effects is not None and effects.records_last_job and workflow.last_job is None:
                    workflow.last_job = report.last_job
        new_status = report.status
        if new_status is None or not transition_allowed(workflow.status, new_status):
            return
        if new_status != workflow.status and is_terminal(new_status):
            self._observer.workflow_finished(str(new_status), report.stopped_at, utc_now())
            effects = TERMINAL_EFFECTS[new_status]
            workflow.stopped_at = report.stopped_at or workflow.stopped_at
            if effects.resolves:
                workflow.resolved_by_user = True
            if effects.records_output:
                workflow.output = report.output or ""
            if effects.records_last_job:
                workflow.last_job = report.last_job
            if report.status_reason and effects.takes_backend_reason:
                workflow.status_reason = report.status_reason
        workflow.status = new_status

    def _mutate_workflow(self, workflow_id: str, change: Callable[[Workflow], None]) -> Workflow:
        """Read, change and write a workflow, again on a concurrent update. Saves only when the
        change changed something."""
        for attempt in range(MUTATE_ATTEMPTS):
            workflow = self._store.get_workflow(workflow_id)
            before = workflow.copy()
            change(workflow)
            if workflow == before:
                return workflow
            try:
                self._store.update_workflow(workflow)
                return workflow
            except ConcurrentModification:
                if attempt == MUTATE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")


class _WatchedRefreshes:
    """Which workflows a GET may refresh now: none being refreshed already, none refreshed within
    `interval` seconds. In-process (each replica holds its own), bounded by pruning."""

    MAX_TRACKED = 10_000

    def __init__(self, interval: float):
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._in_flight: set[str] = set()

    def claim(self, workflow_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if (
                workflow_id in self._in_flight
                or now - self._last.get(workflow_id, -self._interval) < self._interval
            ):
                return False
            self._in_flight.add(workflow_id)
            return True

    def done(self, workflow_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._in_flight.discard(workflow_id)
            self._last[workflow_id] = now
            if len(self._last) > self.MAX_TRACKED:
                self._last = {k: t for k, t in self._last.items() if now - t < self._interval}
