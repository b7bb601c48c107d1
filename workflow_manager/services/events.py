"""The event consumer: the fast path from an execution's (or a Batch job's) change to the store.

Every replica long-polls the one events queue; SQS hands each message to one of them, so the work
shards by itself. Each event names a workflow.

- A Step Functions status change carries what DescribeExecution would say (status, stop date,
  output, error), and is applied as it is with one conditional write (`WorkflowService.
  apply_status`), asking AWS nothing: the status is in the store as soon as the event is read,
  whatever the DescribeExecution budget. Applied monotonically (a terminal status is never left),
  so an event that arrives late or twice changes nothing false. A workflow it ends keeps
  `jobs_pending` until its history is read, by this consumer's deferred refreshes (within the
  GetExecutionHistory budget), or else by the sweep, which lists it as active meanwhile.
- Any other event (a Batch job's change, a status change that does not tell all) says that
  something changed, and the workflow is refreshed: the backend says what. Events of one batch
  that name the same workflow cost one refresh.

A message is deleted once its workflow is refreshed, or when it names no workflow of this service;
one whose refresh failed stays, and SQS delivers it again after its visibility timeout (and to the
dead-letter queue after a few tries). Delivery is best effort, so the background updater's polling
stays the slow path that repairs whatever was lost.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from executor.interface import EventSource, ReceivedEvent
from workflow_manager.domain.errors import NotFound, WorkflowManagerError
from workflow_manager.domain.status import is_terminal
from workflow_manager.services.workflows import StatusApplied, WorkflowService

log = logging.getLogger(__name__)

# Backoff after a failed receive (the queue unreachable), so a broken queue is not spun on.
RECEIVE_ERROR_BACKOFF_SECONDS = 5.0
# A status change of a workflow whose start is not recorded yet is applied by a refresh this much
# later (the start records itself within moments), then at doubling delays, DEFERRED_ATTEMPTS times
# in all; a refresh that failed is retried the same way. Past that the sweep repairs it.
STARTING_RETRY_SECONDS = 1.0
DEFERRED_ATTEMPTS = 5
# Deferred refreshes held at once; past that, new ones are left to the sweep (a workflow whose
# jobs are pending stays listed as active, so none is lost).
MAX_DEFERRED = 50_000
# Workflows whose events of one received batch (at most SQS_MAX_MESSAGES) are applied at once.
EVENT_APPLY_THREADS = 4
# Threads running deferred refreshes: each waits on the AWS call budgets, so a few keep this
# process's share busy.
DEFERRED_THREADS = 2


class EventConsumer:
    def __init__(self, workflows: WorkflowService, source: EventSource, *, wait_seconds: int = 20):
        self._workflows = workflows
        self._source = source
        self._wait_seconds = wait_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.deferred = DeferredRefreshes(workflows)
        self._pool = ThreadPoolExecutor(EVENT_APPLY_THREADS, thread_name_prefix="event-apply")
        self.applied = 0  # events acknowledged, for the tests and the metrics

    def start(self) -> None:
        if self._thread is None:
            self.deferred.start()
            self._thread = threading.Thread(target=self._run, name="event-consumer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 25.0) -> None:
        self._stop.set()
        self.deferred.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._pool.shutdown(wait=False)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.consume_once()
            except WorkflowManagerError as err:
                log.warning("events: could not read the events queue: %s", err.message)
                self._stop.wait(RECEIVE_ERROR_BACKOFF_SECONDS)
            except Exception:
                log.exception("events: pass failed")
                self._stop.wait(RECEIVE_ERROR_BACKOFF_SECONDS)

    def consume_once(self) -> int:
        """Receive one batch of events and apply it; returns how many were acknowledged. The
        events of different workflows are applied side by side (each is a few store calls, whose
        latency would otherwise add up), those of one workflow in the order they came."""
        events = self._source.receive(self._wait_seconds)
        if self._stop.is_set():
            return 0  # stopping: what was received is delivered again, to another consumer
        done: list[str] = [event.receipt for event in events if event.workflow_id is None]
        by_workflow: dict[str, list[ReceivedEvent]] = {}
        for event in events:
            if event.workflow_id is not None:
                by_workflow.setdefault(event.workflow_id, []).append(event)
        for receipts in self._pool.map(self._apply_in_order, by_workflow.values()):
            done.extend(receipts)
        if done:
            self._source.acknowledge(done)
        self.applied += len(done)
        return len(done)

    def _apply_in_order(self, events: list[ReceivedEvent]) -> list[str]:
        """Apply one workflow's events; returns the receipts of those applied. Those that only
        say something changed cost one refresh between them."""
        done: list[str] = []
        refreshed: bool | None = None
        for event in events:
            if event.status is not None:
                applied = self._apply(event)
            else:
                if refreshed is None:
                    refreshed = self._refresh(events[0].workflow_id or "")
                applied = refreshed
            if applied:
                done.append(event.receipt)
        return done

    def _apply(self, event: ReceivedEvent) -> bool:
        assert event.workflow_id is not None and event.status is not None
        try:
            applied = self._workflows.apply_status(event.workflow_id, event.status)
        except NotFound:
            return True
        except WorkflowManagerError as err:
            log.warning(
                "events: could not apply the status of workflow %s: %s", event.workflow_id, err.message
            )
            return False
        except Exception:
            log.exception("events: could not apply the status of workflow %s", event.workflow_id)
            return False
        if applied == StatusApplied.ENDED:
            self.deferred.schedule(event.workflow_id)
        elif (
            applied == StatusApplied.STARTING
            and event.status.status is not None
            and is_terminal(event.status.status)
        ):
            # Ended before its start was recorded: applied by a refresh once it is. (A RUNNING
            # event needs nothing: the write that records the start makes it running.)
            self.deferred.schedule(event.workflow_id, STARTING_RETRY_SECONDS)
        return True

    def _refresh(self, workflow_id: str) -> bool:
        try:
            self._workflows.refresh(workflow_id)
            return True
        except NotFound:
            return True  # not ours (another service in the account), or deleted
        except WorkflowManagerError as err:
            log.warning("events: could not refresh workflow %s: %s", workflow_id, err.message)
            return False
        except Exception:
            log.exception("events: could not refresh workflow %s", workflow_id)
            return False


class DeferredRefreshes:
    """Refreshes to run soon, off the consumer's thread (which keeps reading events while these
    wait on the AWS call budgets): the jobs of workflows that events ended, and the status of
    workflows whose event came before their start was recorded. In-process and best effort: what a
    dead process held is the sweep's to repair."""

    def __init__(self, workflows: WorkflowService, threads: int = DEFERRED_THREADS):
        self._workflows = workflows
        self._threads_wanted = threads
        self._threads: list[threading.Thread] = []
        self._lock = threading.Condition()
        self._due: list[tuple[float, str]] = []  # a heap of (when, workflow id)
        self._attempts: dict[str, int] = {}  # the workflows scheduled, by attempts made
        self._stop = threading.Event()
        self.refreshed = 0  # for the tests

    def __len__(self) -> int:
        with self._lock:
            return len(self._attempts)

    def schedule(self, workflow_id: str, delay: float = 0.0, attempts: int = 0) -> bool:
        """Refresh `workflow_id` in `delay` seconds; False when it was not scheduled (already due,
        or too many are)."""
        with self._lock:
            if workflow_id in self._attempts or len(self._attempts) >= MAX_DEFERRED:
                return False
            self._attempts[workflow_id] = attempts
            heapq.heappush(self._due, (time.monotonic() + delay, workflow_id))
            self._lock.notify()
            return True

    def start(self) -> None:
        while len(self._threads) < self._threads_wanted:
            thread = threading.Thread(target=self._run, name="event-deferred-refresh", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def _next(self) -> tuple[str, int] | None:
        with self._lock:
            while not self._stop.is_set():
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    _, workflow_id = heapq.heappop(self._due)
                    return workflow_id, self._attempts.pop(workflow_id)
                self._lock.wait(self._due[0][0] - now if self._due else None)
            return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            self.run_one(*item)

    def run_one(self, workflow_id: str, attempts: int) -> None:
        try:
            workflow = self._workflows.refresh(workflow_id)
            self.refreshed += 1
            again = workflow.start_claim is not None or workflow.jobs_pending
        except NotFound:
            return
        except WorkflowManagerError as err:
            log.warning("events: deferred refresh of workflow %s failed: %s", workflow_id, err.message)
            again = True
        except Exception:
            log.exception("events: deferred refresh of workflow %s failed", workflow_id)
            again = True
        if again and attempts + 1 < DEFERRED_ATTEMPTS:
            self.schedule(workflow_id, STARTING_RETRY_SECONDS * 2**attempts, attempts + 1)
