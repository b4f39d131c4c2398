"""Which jobs are cancelled, as a worker process knows it without asking Redis per message or step.

A cancelled job's id goes into a sorted set; each worker process reads what
was added since it last looked, at most once every ``refresh_interval_s``, so
checking costs a set lookup in memory. Two things ask: the job-status
middleware, before a message runs (a cancelled job's messages are skipped), and
a running stage, between diffusion steps and frames (through
``workers.jobs.running.job_cancelled``), so that cancelling a job also frees the
worker thread that is busy with it. A stage notices a cancellation within one
refresh and one step; the job's record stays ``cancelled`` regardless.
"""

from __future__ import annotations

import threading
import time

from workers.jobs.record import JobStatusStore

#: How stale the process's view of cancellations may be. Half a second: a running stage asks
#: between steps, so this bounds how long a cancelled stage keeps its thread; the price is
#: one small Redis read per interval per busy process.
DEFAULT_REFRESH_INTERVAL_S = 0.5


class CancelledJobs:
    """The process's cached set of cancelled job ids; ``job_id in cancelled`` asks it."""

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
