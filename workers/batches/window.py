"""The batch run window: batch work runs only between two times of day, in a given time zone.

Outside the window, a batch actor's message is put back until the window opens (no busy loop,
no retry spent); interactive actors are never held. A window may cross midnight
(``22:00-06:00``). Also wires batch completion: the worker that records a batch's last job
writes the batch's manifest.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from queue_config.stages import BATCH_SUFFIX
from workers.middleware import JobStatusMiddleware, put_back
from workers.runtime import Runtime

_DAY_S = 24 * 3600


def _seconds_of_day(text: str) -> int:
    parts = [int(part) for part in text.strip().split(":")]
    hours, minutes, seconds = [*parts, 0, 0][:3]
    if not (0 <= hours < 24 and 0 <= minutes < 60 and 0 <= seconds < 60) or len(parts) > 3:
        raise ValueError(f"not a time of day: {text!r} (HH:MM or HH:MM:SS)")
    return hours * 3600 + minutes * 60 + seconds


class BatchWindow(Middleware):
    """Holds batch actors' messages outside ``window`` (``"HH:MM[:SS]-HH:MM[:SS]"``) in ``timezone``."""

    def __init__(self, window: str, timezone: str = "UTC") -> None:
        start, _, end = window.partition("-")
        self.window = window
        self.start_s, self.end_s = _seconds_of_day(start), _seconds_of_day(end)
        self.timezone = ZoneInfo(timezone)

    def seconds_until_open(self, now: dt.datetime | None = None) -> float:
        """0 inside the window, else how long until it opens."""
        now = now or dt.datetime.now(self.timezone)
        local = now.astimezone(self.timezone)
        of_day = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        inside = (self.start_s <= of_day < self.end_s) if self.start_s < self.end_s else not (
            self.end_s <= of_day < self.start_s)
        return 0.0 if inside else (self.start_s - of_day) % _DAY_S

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if not message.actor_name.endswith(BATCH_SUFFIX):
            return
        wait_s = self.seconds_until_open()
        if wait_s:
            put_back(broker, message, int(wait_s * 1000), f"outside the batch window {self.window}", jitter=False)


def add_batch_middleware(broker: dramatiq.Broker, runtime: Runtime) -> None:
    """The batch window (when one is set) ahead of the status middleware; batch completion after it."""
    from workers.batches import complete_if_done

    settings = runtime.settings
    if settings.batch_window:
        broker.add_middleware(BatchWindow(settings.batch_window, settings.batch_timezone), before=JobStatusMiddleware)
    for middleware in broker.middleware:
        if isinstance(middleware, JobStatusMiddleware):
            middleware.on_batch_job_finished = lambda batch_id: complete_if_done(
                runtime.status, runtime.store, batch_id, settings.presigned_url_ttl_s
            )
