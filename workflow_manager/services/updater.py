"""The background updater: keeps every non-terminal workflow's status and jobs current, so that a
client sees progress without calling GET and a finished workflow is recorded finished.

Each workflow is checked on its own schedule, which backs off as the workflow ages: a workflow
started a second ago is checked about every second, one running for an hour about once a minute.
Refreshes are rate limited (a token bucket) because each one costs a DescribeExecution and a
GetExecutionHistory call, and GetExecutionHistory has a low rate limit in AWS (reference notes 3.12).

When events are the fast path (`workflow_manager.services.events`), the updater is the sweep that
repairs what events missed, and one sweep is enough: it runs only while its process holds the
store's SWEEP_LEASE_NAME lease (`SweepLease`), so replicas (and gunicorn's processes) do not
multiply its calls against the account's quotas. A replica that dies stops renewing, and another
takes the sweep over within the lease's duration.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from executor.rate_limit import TokenBucket
from store.interface import Store
from workflow_manager.domain.errors import NotFound, WorkflowManagerError
from workflow_manager.domain.status import is_terminal, workflow_is_done
from workflow_manager.services.workflows import WorkflowService

log = logging.getLogger(__name__)

# Fraction of a workflow's age that passes between two checks of it, before the bounds apply.
AGE_BACKOFF_FACTOR = 0.1
# How long a finished workflow with open jobs is still checked (seconds).
LINGER_SECONDS = 600.0


# With events as the fast path, the sweep checks a workflow at most this often: the events bring
# status changes, GETs refresh what is watched, and the sweep repairs the rest.
SWEEP_MIN_INTERVAL_SECONDS = 5.0
SWEEP_LEASE_NAME = "updater-sweep"
SWEEP_LEASE = timedelta(seconds=30)


class SweepLease:
    """This process's hold on the sweep lease: renewed (or sought) every third of its duration, so a
    holder renews twice before another may take it, and a waiting replica writes rarely."""

    def __init__(self, store: Store, duration: timedelta = SWEEP_LEASE, name: str = SWEEP_LEASE_NAME):
        self._store = store
        self._duration = duration
        self._name = name
        self.owner = uuid.uuid4().hex
        self._held = False
        self._check_at = 0.0

    def held(self) -> bool:
        now = time.monotonic()
        if now < self._check_at:
            return self._held
        try:
            self._held = self._store.acquire_lease(self._name, self.owner, self._duration)
        except WorkflowManagerError as err:
            # Unable to renew: stop sweeping rather than risk two sweeps at once.
            log.warning("updater: could not renew the sweep lease: %s", err.message)
            self._held = False
        self._check_at = now + self._duration.total_seconds() / 3
        return self._held

    def release(self) -> None:
        if self._held:
            try:
                self._store.release_lease(self._name, self.owner)
            except WorkflowManagerError as err:
                log.warning("updater: could not release the sweep lease: %s", err.message)
            self._held = False


@dataclass
class _Schedule:
    first_seen: float
    next_check: float
    # Set once the workflow's status is terminal while some of its jobs are still open (a Batch
    # workflow fails with its first failed job; Batch aborts the dependents a moment later): it is
    # then checked until its jobs are done, or until this deadline.
    linger_until: float | None = None


class BackgroundUpdater:
    def __init__(
        self,
        workflows: WorkflowService,
        *,
        tick_seconds: float = 0.5,
        min_interval_seconds: float = 1.0,
        max_interval_seconds: float = 60.0,
        max_refreshes_per_second: float = 10.0,
        lease: SweepLease | None = None,
    ):
        self._workflows = workflows
        self._lease = lease
        self._tick = tick_seconds
        self._min_interval = min_interval_seconds
        self._max_interval = max_interval_seconds
        self._budget = TokenBucket(max_refreshes_per_second, max(1.0, max_refreshes_per_second))
        self._schedules: dict[str, _Schedule] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def interval_for_age(self, age_seconds: float) -> float:
        return min(self._max_interval, max(self._min_interval, age_seconds * AGE_BACKOFF_FACTOR))

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="workflow-updater", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._lease is not None:
            self._lease.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("updater pass failed")
            self._stop.wait(self._tick)

    def run_once(self) -> int:
        """One pass: refresh every active workflow that is due. Returns how many were refreshed.
        With a lease, only while this process holds it."""
        if self._lease is not None and not self._lease.held():
            self._schedules.clear()  # the holder keeps them; a takeover starts afresh
            return 0
        now = time.monotonic()
        active = set(self._workflows.active_workflow_ids())
        for gone in set(self._schedules) - active:
            schedule = self._schedules[gone]
            if schedule.linger_until is None and not self._workflows.is_done(gone):
                # It finished without this updater seeing it (a GET refreshed it) while some of
                # its jobs are still open: keep checking it, as if this updater had seen it finish.
                schedule.linger_until = now + LINGER_SECONDS
            elif schedule.linger_until is None or schedule.linger_until < now:
                del self._schedules[gone]
        due = active | set(self._schedules)
        refreshed = 0
        for workflow_id in sorted(due, key=lambda i: self._due(i, now)):
            schedule = self._schedules.setdefault(workflow_id, _Schedule(now, now))
            if schedule.next_check > now or self._stop.is_set():
                continue
            if not self._budget.try_take():
                break
            refreshed += 1
            try:
                workflow = self._workflows.refresh(workflow_id)
            except NotFound:
                self._schedules.pop(workflow_id, None)
                continue
            except WorkflowManagerError as err:
                log.warning("could not refresh workflow %s: %s", workflow_id, err)
            except Exception:
                # Whatever went wrong with this one workflow, its next check moves on below, so
                # that it does not sort first again and block every other workflow's refresh.
                log.exception("could not refresh workflow %s", workflow_id)
            else:
                if workflow_is_done(workflow):
                    self._schedules.pop(workflow_id, None)
                    continue
                if is_terminal(workflow.status) and schedule.linger_until is None:
                    schedule.linger_until = now + LINGER_SECONDS
            schedule.next_check = now + self.interval_for_age(now - schedule.first_seen)
        return refreshed

    def _due(self, workflow_id: str, now: float) -> float:
        schedule = self._schedules.get(workflow_id)
        return schedule.next_check if schedule else now
