"""The token bucket every rate limit of the service uses: SubmitJob calls of the Batch executor
(a blocking `acquire`, within AWS Batch's 50 per second) and the background updater's refreshes
(a non-blocking `try_take`, each refresh costing a DescribeExecution and a GetExecutionHistory)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """At most `rate_per_second` takes per second on average, in bursts of up to `burst` (default:
    one second's worth). Thread-safe. `clock` and `sleep` are injectable for tests."""

    def __init__(
        self,
        rate_per_second: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._rate = rate_per_second
        self._capacity = burst if burst is not None else rate_per_second
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def try_take(self) -> bool:
        """Take a token when one is there; never waits."""
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def acquire(self) -> None:
        """Take a token, waiting as long as it takes for one."""
        while True:
            with self._lock:
                self._refill()
                # The epsilon absorbs float rounding: a sleep of exactly the computed wait must do.
                if self._tokens >= 1 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                wait = (1 - self._tokens) / self._rate
            self._sleep(wait)
