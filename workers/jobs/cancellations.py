"""Which jobs are cancelled, as a worker process knows it without asking Redis per message.

A cancelled job's id goes into a sorted set; each worker process reads what
was added since it last looked, at most once a second, so checking a message
costs a set lookup in memory. A message of a job cancelled in the last second
may still run one stage; the job's record stays ``cancelled`` regardless.
"""

from __future__ import annotations

import threading
import time

from workers.jobs.record import JobStatusStore

#: How stale the process's view of cancellations may be.
DEFAULT_REFRESH_INTERVAL_S = 1.0


class CancelledJobs:
    def __init__(self, store: JobStatusStore, *, refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S) -> None:
        self.store = store
        self.refresh_interval_s = refresh_interval_s
        self._ids: set[str] = set()
        self._since = 0.0
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def __contains__(self, job_id: str) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= self.refresh_interval_s:
            with self._lock:
                if now - self._checked_at >= self.refresh_interval_s:
                    new_ids, self._since = self.store.cancelled_since(self._since)
                    self._ids.update(new_ids)
                    self._checked_at = now
        return job_id in self._ids
