"""Timestamps for stored records.

Times are kept at millisecond precision (the wire format's), so two records written in the same
millisecond would tie. Listings order by `createdAt`, and the contract wants the next version of a
definition and every workflow update to be strictly later than what it follows; a store therefore
takes its times from one MonotonicClock, which never returns the same millisecond twice.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from workflow_manager.domain.models import utc_now

ONE_MILLISECOND = timedelta(milliseconds=1)


class MonotonicClock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: datetime | None = None

    def now(self, after: datetime | None = None) -> datetime:
        """Now, strictly later than every time this clock returned before and than `after`."""
        with self._lock:
            value = utc_now()
            for floor in (self._last, after):
                if floor is not None and value <= floor:
                    value = floor + ONE_MILLISECOND
            self._last = value
            return value
