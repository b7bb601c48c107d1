"""AWS call budgets shared by the replicas: a token bucket per budgeted API action
(`workflow_manager.domain.aws.AWS_CALL_BUDGETS_PER_SECOND`), sized to this process's share of the
budget (the budget divided by the number of live replicas, which `ReplicaCount` tells), and applied
to every call of a boto3 client with botocore's `before-call` event, so no code path can spend
past it. A call waits for its token; the wait is bounded by the share's rate.

Replicas register themselves in the store with a heartbeat (`Store.heartbeat`), so a replica that
dies stops counting after one heartbeat TTL and the others' shares grow back.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from executor.rate_limit import TokenBucket
from workflow_manager.domain.errors import WorkflowManagerError

log = logging.getLogger(__name__)

REPLICA_GROUP = "replicas"
# How long a replica counts without a heartbeat, and how often it beats (three beats per TTL).
REPLICA_TTL = timedelta(seconds=30)


class CallBudgets:
    def __init__(self, budgets: Mapping[tuple[str, str], float], replicas: Callable[[], int] = lambda: 1):
        self._budgets = dict(budgets)
        self._replicas = replicas
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._sized_for = 0

    def share(self, service: str, operation: str) -> float | None:
        """This process's calls per second of the action, or None when it has no budget."""
        budget = self._budgets.get((service, operation))
        return None if budget is None else budget / max(1, self._replicas())

    def _bucket(self, key: tuple[str, str]) -> TokenBucket | None:
        if key not in self._budgets:
            return None
        replicas = max(1, self._replicas())
        with self._lock:
            if replicas != self._sized_for:
                # A replica joined or left: every share changes at once.
                self._buckets = {k: TokenBucket(rate / replicas) for k, rate in self._budgets.items()}
                self._sized_for = replicas
            return self._buckets[key]

    def attach(self, client: Any) -> Any:
        """Hold every call of `client` to the budgets; returns the client."""
        service = client.meta.service_model.service_name

        def before_call(model: Any, **_kwargs: Any) -> None:
            bucket = self._bucket((service, model.name))
            if bucket is not None:
                bucket.acquire()

        client.meta.events.register("before-call", before_call)
        return client


class ReplicaCount:
    """This replica's heartbeat in the store, and the number of live replicas it reads back. Beats
    from a daemon thread every third of REPLICA_TTL; until the first beat, and while the store is
    unreachable, the last count stands (1 at first)."""

    def __init__(self, store: Any, ttl: timedelta = REPLICA_TTL, group: str = REPLICA_GROUP):
        self._store = store
        self._ttl = ttl
        self._group = group
        self.member = uuid.uuid4().hex
        self._count = 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self) -> int:
        return self._count

    def beat(self) -> int:
        try:
            self._count = max(1, self._store.heartbeat(self._group, self.member, self._ttl))
        except WorkflowManagerError as err:
            log.warning("replica heartbeat failed: %s", err.message)
        return self._count

    def start(self) -> None:
        if self._thread is None:
            self.beat()
            self._thread = threading.Thread(target=self._run, name="replica-heartbeat", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._ttl.total_seconds() / 3):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        try:
            self._store.leave(self._group, self.member)
        except WorkflowManagerError as err:
            log.warning("replica could not leave the group: %s", err.message)
