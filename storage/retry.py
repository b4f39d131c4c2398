"""Storage calls that wait out outages: transient failures are retried by time, not by count.

A stage's own retries (``queue_config/stages.py``) are for failed compute. A storage blip must not
spend them, nor make a stage compute again what it already holds in memory, so each store sends its
reads and writes through ``StorageRetry.call``: a failure the store calls transient (it knows its
backend's errors) is retried with exponential backoff and full jitter (tenacity's
``wait_random_exponential``, so the many threads that hit one outage do not come back in step),
each sleep capped, until ``retry_s`` has passed since the first attempt. Then ``StorageUnavailable``
names the store and the key. Anything else (not found, access denied, a bad key) raises at once.

An outage is logged once per store, not once per attempt or per thread: a warning when a call
first fails, an info line when one succeeds again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")

#: How long a read or write keeps retrying a store that is unreachable (``Settings.storage_retry_s``).
DEFAULT_RETRY_S = 180.0
#: The first backoff window: the first sleep is up to this long, each next window twice as wide...
FIRST_BACKOFF_S = 0.5
#: ...and no sleep is longer than this, so calls notice soon that storage is back.
MAX_BACKOFF_S = 5.0

logger = logging.getLogger(__name__)
_backoff = tenacity.wait_random_exponential(multiplier=FIRST_BACKOFF_S, max=MAX_BACKOFF_S)


class StorageUnavailable(Exception):
    """A store stayed unreachable for the whole retry deadline."""

    def __init__(self, store: str, operation: str, key: str, waited_s: float, last_error: BaseException) -> None:
        super().__init__(
            f"storage {store} unavailable: {operation} {key!r} still failing after {waited_s:.1f} s "
            f"of retries (last error: {type(last_error).__name__}: {last_error})"
        )
        self.store = store
        self.key = key


class StorageRetry:
    """Retries one store's calls through outages, and logs each outage once.

    Parameters:
      store: how the store is named in logs and errors (no credentials: e.g. ``s3 bucket at endpoint``).
      is_transient: whether an exception is worth waiting out.
      retry_s: how long a call keeps trying, from its first attempt; 0 tries once.
    """

    def __init__(self, store: str, is_transient: Callable[[BaseException], bool], *, retry_s: float) -> None:
        self.store = store
        self.is_transient = is_transient
        self.retry_s = retry_s
        #: Transient failures retried so far, over all calls (what a test or a metric reads).
        self.retried = 0
        self._lock = threading.Lock()
        self._down_since: float | None = None

    def call(self, operation: str, key: str, attempt: Callable[[], T]) -> T:
        """``attempt()``, again after each transient failure until ``retry_s`` has passed.

        Raises:
          StorageUnavailable: still failing transiently at the deadline.
          Exception: whatever ``attempt`` raised that is not transient, at once.
        """
        def wait_s(state: tenacity.RetryCallState) -> float:
            """The backoff, cut short so that the last attempt comes at the deadline, not before it."""
            return min(_backoff(state), max(0.0, self.retry_s - (state.seconds_since_start or 0.0)))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self.is_transient),
            stop=tenacity.stop_after_delay(self.retry_s),
            wait=wait_s,
            before_sleep=lambda state: self._went_down(operation, key, state),
        )
        started = attempt_started = time.monotonic()

        def timed_attempt() -> T:
            nonlocal attempt_started
            attempt_started = time.monotonic()
            return attempt()

        try:
            result = retrying(timed_attempt)
        except tenacity.RetryError as error:
            last = error.last_attempt.exception() or error
            raise StorageUnavailable(self.store, operation, key, time.monotonic() - started, last) from last
        self._came_back(operation, key, attempt_started)
        return result

    def _went_down(self, operation: str, key: str, state: tenacity.RetryCallState) -> None:
        with self._lock:
            self.retried += 1
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "storage %s unreachable (%s %r: %s: %s); reads and writes wait up to %.0f s",
            self.store, operation, key, type(error).__name__, error, self.retry_s,
        )

    def _came_back(self, operation: str, key: str, attempt_started: float) -> None:
        """Storage is back if an attempt that began after it went down succeeded (one already on
        its way when it went down proves nothing)."""
        if self._down_since is None or attempt_started < self._down_since:  # the usual case: no lock taken
            return
        with self._lock:
            down_since = self._down_since
            if down_since is None or attempt_started < down_since:
                return
            self._down_since = None
        logger.info(
            "storage %s reachable again after %.1f s (%s %r)", self.store, time.monotonic() - down_since, operation, key
        )
