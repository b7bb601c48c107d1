"""The event consumer: the fast path from an execution's (or a Batch job's) change to the store.

Every replica long-polls the one events queue; SQS hands each message to one of them, so the work
shards by itself. Each event names a workflow, which is refreshed (its status, jobs and output read
from the backend and applied with the store's conditional write, monotonically: see
`WorkflowService.refresh`): an event says that something changed, the backend says what, so an
event that arrives late or twice changes nothing false. Events of one batch that name the same
workflow cost one refresh.

A message is deleted once its workflow is refreshed, or when it names no workflow of this service;
one whose refresh failed stays, and SQS delivers it again after its visibility timeout (and to the
dead-letter queue after a few tries). Delivery is best effort, so the background updater's polling
stays the slow path that repairs whatever was lost.
"""

from __future__ import annotations

import logging
import threading

from executor.interface import EventSource
from workflow_manager.domain.errors import NotFound, WorkflowManagerError
from workflow_manager.services.workflows import WorkflowService

log = logging.getLogger(__name__)

# Backoff after a failed receive (the queue unreachable), so a broken queue is not spun on.
RECEIVE_ERROR_BACKOFF_SECONDS = 5.0


class EventConsumer:
    def __init__(self, workflows: WorkflowService, source: EventSource, *, wait_seconds: int = 20):
        self._workflows = workflows
        self._source = source
        self._wait_seconds = wait_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0  # events acknowledged, for the tests and the metrics

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="event-consumer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 25.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

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
        """Receive one batch of events and apply it; returns how many were acknowledged."""
        events = self._source.receive(self._wait_seconds)
        done: list[str] = []
        outcome: dict[str, bool] = {}
        for event in events:
            if event.workflow_id is None:
                done.append(event.receipt)
                continue
            if event.workflow_id not in outcome:
                outcome[event.workflow_id] = self._refresh(event.workflow_id)
            if outcome[event.workflow_id]:
                done.append(event.receipt)
        if done:
            self._source.acknowledge(done)
        self.applied += len(done)
        return len(done)

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
