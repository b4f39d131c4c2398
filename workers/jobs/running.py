"""What a running stage may ask about its job without being handed it: whether the job has been
cancelled, and where the job's status writes go.

The actor shell opens :func:`running_job` around the stage function. The hooks the stage gives
its pipelines (``should_stop``, a ``StageProgress``) ask through it on the stage's thread, or take
what it holds with them where another thread calls them (a batched render runs several jobs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from workers.jobs.cancellations import CancelledJobs
from workers.jobs.status_writer import StatusWriter

_running = threading.local()


@contextmanager
def running_job(job_id: str, cancelled: CancelledJobs | None, writer: StatusWriter | None = None) -> Iterator[None]:
    """While the block runs, :func:`job_cancelled` on this thread asks ``cancelled`` about ``job_id``,
    and :func:`status_writer` is ``writer``.

    With ``cancelled`` None (a broker without the job-status middleware) a job never stops early.
    """
    _running.check = None if cancelled is None else (lambda: job_id in cancelled)
    _running.writer = writer
    try:
        yield
    finally:
        _running.check = None
        _running.writer = None


def job_cancelled() -> bool:
    """Whether the job this thread's stage is running has been cancelled: the stages' ``should_stop``.

    Cheap enough to ask once per diffusion step or frame: no Redis round trip unless the
    process's view is due a refresh. False outside :func:`running_job`.
    """
    check = getattr(_running, "check", None)
    return check is not None and check()


def cancellation_check() -> Callable[[], bool]:
    """:func:`job_cancelled` bound to this thread's job, to be asked from another thread.

    A batched render runs in one worker thread for several jobs (workers/stages/batching.py), so
    it cannot ask the thread-local :func:`job_cancelled` for the others.
    """
    check = getattr(_running, "check", None)
    return check if check is not None else (lambda: False)


def status_writer() -> StatusWriter | None:
    """The writer the job-status middleware queues this thread's job's record writes on: a write
    queued there lands after the stage's start and before its end. None outside :func:`running_job`
    or without the middleware."""
    return getattr(_running, "writer", None)
