"""Starting workflows outside the request that asked for them, from a durable intent.

A start can outlast its request: a Batch workflow of hundreds of states is hundreds of SubmitJob
calls, within Batch's rate. Run inside the request, such a start was answered `503 Request timed
out` while it went on and finished: a client that retried started it twice. So:

- The workflow is saved with a StartClaim (the intent: who is starting it, until when) before
  anything is started, and the claim is cleared by the write that records the finished start.
- The start runs on this runner's pool. The request waits for it while it has time
  (`wait_seconds`, cut to the request's deadline): a start that finishes in time is answered as
  before (its errors too: 4xx with nothing left behind); a slower one is answered with the
  workflow `queued`, and its attempt records its own end: the jobs, or `failed` with the reason.
- While it works, an attempt records the jobs it has submitted (at most every
  PROGRESS_WRITE_SECONDS) and renews its claim in the same write: a crash leaves every job but the
  last few recorded, and those are found again by the next attempt (the executor's `resuming`).
- A claim that expired belongs to an attempt that died (a replica killed mid-start): any replica
  takes it over with a conditional write (`take_over`, called by refresh, so by the updater or a
  GET) and finishes the start, adopting what was already submitted.
- A workflow cancelled while it starts: the attempt hears of it at its next progress write and
  stops what it submitted; one that had submitted everything cancels it when it records the end.

Assumption: replicas' clocks agree within a small part of the lease (NTP), since an expiry written
by one replica is read by another.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from executor.interface import Executor, StartAbandoned, StartedExecution, StartInterrupted
from store.interface import Store
from workflow_manager.domain.errors import NotFound, WorkflowManagerError
from workflow_manager.domain.models import Job, StartClaim, Workflow, WorkflowStatus, utc_now
from workflow_manager.domain.status import is_terminal

log = logging.getLogger(__name__)

# How long a start claim lasts before another replica may take the start over. Renewed by every
# progress write; it bounds how long a start a dead replica left behind waits to be finished.
START_LEASE = timedelta(seconds=60)
# How long a start request waits for its start before answering with the workflow `queued` (the
# request timeout is 5 s: see Config.request_timeout_seconds).
START_WAIT_SECONDS = 3.0
# How often an attempt records its progress (and renews its claim) while it submits.
PROGRESS_WRITE_SECONDS = 1.0
# An attempt renews its claim when less than this part of the lease is left, whatever the time
# since its last write, and stops when it could not: the lease must outlast the next backend call.
RENEW_WHEN_LEFT = 0.5
# Starts running at once in one process (the rest wait in the pool's queue: their claims are
# renewed by nobody, so a long wait behind slow starts ends in a takeover, which is correct too).
START_POOL_SIZE = 16
# The time a request keeps, past its start's wait, to write its answer before its deadline.
ANSWER_MARGIN_SECONDS = 0.5

WorkflowMutation = Callable[[str, Callable[[Workflow], None]], Workflow]


@dataclass
class _Attempt:
    """One start attempt, shared by the attempt's thread and the request waiting for it."""

    workflow_id: str
    owner: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: threading.Event = field(default_factory=threading.Event)
    # Set by the request when it stops waiting: the attempt then records its own end.
    detached: bool = False
    outcome: StartedExecution | BaseException | None = None


class StartRunner:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        mutate: WorkflowMutation,
        *,
        lease: timedelta = START_LEASE,
        wait_seconds: float = START_WAIT_SECONDS,
        pool_size: int = START_POOL_SIZE,
    ):
        self._store = store
        self._executor = executor
        self._mutate = mutate
        self._lease = lease
        self._wait_seconds = wait_seconds
        self._pool = ThreadPoolExecutor(pool_size, thread_name_prefix="workflow-start")

    def new_claim(self) -> StartClaim:
        return StartClaim(owner=uuid.uuid4().hex, expires_at=utc_now() + self._lease)

    def wait_seconds(self, deadline: float | None) -> float:
        """How long a request with this (monotonic) deadline may wait for its start."""
        if deadline is None:
            return self._wait_seconds
        return min(self._wait_seconds, deadline - time.monotonic() - ANSWER_MARGIN_SECONDS)

    # Starting

    def start(self, workflow: Workflow, wait_seconds: float) -> bool:
        """Run the start of `workflow` (saved with its claim) and wait up to `wait_seconds` for
        it. Finished in time: the outcome is the caller's, as if the start had run inline (the
        workflow is updated with the recorded jobs; errors are raised, and the caller removes
        what it saved). Not finished: returns False, and the attempt records its own end."""
        claim = workflow.start_claim
        assert claim is not None, "a workflow is saved with its start claim"
        attempt = _Attempt(workflow.id, claim.owner)
        # In a copy of the caller's context: the attempt's log lines carry the workflow id too.
        self._pool.submit(contextvars.copy_context().run, self._run, attempt, workflow.copy(), False)
        attempt.finished.wait(max(0.0, wait_seconds))
        with attempt.lock:
            if attempt.outcome is None:
                attempt.detached = True
                log.info("workflow %s is still starting; answered as queued", workflow.id)
                return False
            outcome = attempt.outcome
        if isinstance(outcome, StartInterrupted):
            self._record_interrupted(attempt, outcome)
            return True
        if isinstance(outcome, BaseException):
            raise outcome
        if not outcome.jobs:
            # Nothing to show in the answer (Step Functions: the execution runs): clearing the claim
            # is left to the pool, so the request does not wait for another store write. Should
            # this process die first, the claim expires and a takeover finds the execution started.
            self._pool.submit(self._record_quietly, attempt, outcome)
            return True
        saved = self._record_started(attempt, outcome)
        if saved is not None:
            workflow.jobs, workflow.start_claim = saved.jobs, saved.start_claim
            workflow.revision, workflow.last_updated = saved.revision, saved.last_updated
        return True

    def take_over(self, workflow: Workflow) -> bool:
        """Take over the start of `workflow`, whose claim expired, and finish it in the
        background. False when another replica took it first."""
        expired = workflow.start_claim
        claim = self.new_claim()

        def claim_it(current: Workflow) -> None:
            if current.start_claim != expired:
                raise _ClaimedByAnother
            current.start_claim = claim

        try:
            claimed = self._mutate(workflow.id, claim_it)
        except (_ClaimedByAnother, NotFound):
            return False
        log.warning("workflow %s: taking over a start left unfinished by %s", workflow.id, expired)
        attempt = _Attempt(workflow.id, claim.owner, detached=True)
        self._pool.submit(contextvars.copy_context().run, self._run, attempt, claimed, True)
        return True

    def _run(self, attempt: _Attempt, workflow: Workflow, resuming: bool) -> None:
        try:
            outcome: StartedExecution | BaseException = self._executor.start(
                workflow, _ProgressRecorder(self, attempt, resuming), resuming
            )
        except BaseException as err:  # noqa: BLE001 - handed to whoever records the outcome
            outcome = err
        with attempt.lock:
            attempt.outcome = outcome
            attempt.finished.set()
            if not attempt.detached:
                return  # the waiting request records it
        try:
            self._record_detached(attempt, outcome)
        except Exception:
            # Left claimed: the claim expires and another attempt finishes the start.
            log.exception("could not record the start of workflow %s", attempt.workflow_id)

    # Recording

    def _record_quietly(self, attempt: _Attempt, outcome: StartedExecution) -> None:
        try:
            self._record_started(attempt, outcome)
        except Exception:
            log.exception("could not record the start of workflow %s", attempt.workflow_id)

    def _owned_change(self, attempt: _Attempt, change: Callable[[Workflow], None]) -> Workflow | None:
        """Apply `change` and clear the claim, if the claim is still this attempt's. None when it
        is not (another attempt took the start over and records it) or the workflow is gone."""

        def apply(current: Workflow) -> None:
            if current.start_claim is None or current.start_claim.owner != attempt.owner:
                raise _ClaimedByAnother
            change(current)
            current.start_claim = None

        try:
            return self._mutate(attempt.workflow_id, apply)
        except (_ClaimedByAnother, NotFound):
            log.info(
                "workflow %s: start attempt %s no longer owns the start", attempt.workflow_id, attempt.owner
            )
            return None

    def _record_started(self, attempt: _Attempt, started: StartedExecution) -> Workflow | None:
        def record(current: Workflow) -> None:
            _add_jobs(current, started.jobs)
            if started.running and current.status == WorkflowStatus.QUEUED:
                current.status = WorkflowStatus.RUNNING

        saved = self._owned_change(attempt, record)
        if saved is not None and is_terminal(saved.status):
            # Cancelled while it started (after its last progress write): stop what started.
            self._stop_started(saved)
        return saved

    def _stop_started(self, workflow: Workflow) -> None:
        try:
            self._executor.cancel(
                workflow, workflow.status_reason or f"workflow {workflow.status} while starting"
            )
        except NotFound:
            pass
        except WorkflowManagerError:
            log.exception(
                "workflow %s was %s while it started; stopping it failed", workflow.id, workflow.status
            )

    def _record_interrupted(self, attempt: _Attempt, interrupted: StartInterrupted) -> None:
        if not interrupted.terminate:
            return  # taken over (or left for a later attempt): the claim is not this attempt's to clear
        self._owned_change(attempt, lambda current: _add_jobs(current, interrupted.jobs))

    def _record_detached(self, attempt: _Attempt, outcome: StartedExecution | BaseException) -> None:
        if isinstance(outcome, StartedExecution):
            self._record_started(attempt, outcome)
        elif isinstance(outcome, StartInterrupted):
            self._record_interrupted(attempt, outcome)
        else:
            # The caller was answered `queued`: the record says why it did not start, and keeps
            # what had been submitted (and terminated) so that nothing ran unknown to the service.
            jobs = outcome.jobs if isinstance(outcome, StartAbandoned) else []
            error = outcome.error if isinstance(outcome, StartAbandoned) else outcome
            reason = (
                error.message if isinstance(error, WorkflowManagerError) else f"failed to start: {error!r}"
            )
            if not isinstance(error, WorkflowManagerError):
                log.error("start of workflow %s failed", attempt.workflow_id, exc_info=error)

            def fail(current: Workflow) -> None:
                _add_jobs(current, jobs)
                if is_terminal(current.status):
                    return
                current.status = WorkflowStatus.FAILED
                current.status_reason = reason
                current.stopped_at = utc_now()

            self._owned_change(attempt, fail)

    # Progress

    def record_progress(self, attempt: _Attempt, jobs: list[Job]) -> None:
        """Record the jobs submitted so far and renew the claim; raise StartInterrupted when the
        workflow was cancelled (stop what was submitted) or the claim is another's (leave it)."""
        claim = StartClaim(attempt.owner, utc_now() + self._lease)
        stop: StartInterrupted | None = None

        def record(current: Workflow) -> None:
            nonlocal stop
            if current.start_claim is None or current.start_claim.owner != attempt.owner:
                stop = StartInterrupted("another attempt took the start over", terminate=False)
                return
            _add_jobs(current, jobs)
            current.start_claim = claim
            if is_terminal(current.status):
                stop = StartInterrupted(current.status_reason or f"workflow {current.status}", terminate=True)

        try:
            self._mutate(attempt.workflow_id, record)
        except NotFound:
            raise StartInterrupted("the workflow was deleted while it started", terminate=True) from None
        if stop is not None:
            raise stop

    @property
    def lease_seconds(self) -> float:
        return self._lease.total_seconds()


class _ProgressRecorder:
    """An attempt's `progress` callback: writes at most every PROGRESS_WRITE_SECONDS, and always
    when its claim is running out. A failed write is tolerated while the claim has time left; once
    it has not, the attempt stops (StartInterrupted without terminate) and leaves the start to the
    next attempt, which adopts what was submitted."""

    def __init__(self, runner: StartRunner, attempt: _Attempt, resuming: bool):
        self._runner = runner
        self._attempt = attempt
        self._last_write = time.monotonic()
        # A fresh claim was written just now; a resumed start checks at once whether the workflow
        # was cancelled while its start lay unfinished, before it creates anything.
        self._renew_by = self._last_write + (0 if resuming else runner.lease_seconds * (1 - RENEW_WHEN_LEFT))

    def __call__(self, jobs: list[Job]) -> None:
        now = time.monotonic()
        if now - self._last_write < PROGRESS_WRITE_SECONDS and now < self._renew_by:
            return
        try:
            self._runner.record_progress(self._attempt, jobs)
        except WorkflowManagerError as err:
            if time.monotonic() < self._renew_by:
                log.warning(
                    "workflow %s: could not record start progress: %s", self._attempt.workflow_id, err
                )
                return
            raise StartInterrupted(
                f"could not renew the start claim: {err.message}", terminate=False
            ) from err
        self._last_write = now
        self._renew_by = now + self._runner.lease_seconds * (1 - RENEW_WHEN_LEFT)


class _ClaimedByAnother(Exception):
    """Raised inside a mutation to leave the workflow as it is: its claim is not the one expected."""


def _add_jobs(workflow: Workflow, jobs: list[Job]) -> None:
    """Add the submitted `jobs` the workflow does not list yet (by id), keeping what it lists (a
    report may have refreshed those)."""
    known = {job.id for job in workflow.jobs}
    workflow.jobs = [*workflow.jobs, *(job for job in jobs if job.id not in known)]
