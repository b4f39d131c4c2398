"""Reopening a failed job, so that an operator's requeue or retry runs its stages again."""

from __future__ import annotations

import time
from pathlib import Path

from workers.jobs.record import JobStatusStore

_REOPEN_LUA = (Path(__file__).parent / "reopen.lua").read_text()


def reopen_failed_job(status: JobStatusStore, job_id: str, *, from_start: bool, stage: str = "") -> bool:
    """Set a failed job back to ``queued`` (see ``reopen.lua``) and say so on the event stream.

    ``from_start``: its next message is its first stage's, so its progress starts over; else it
    goes on from ``stage``, the one that failed. False (and nothing changes) if it is not failed.
    """
    reopen = status.client.register_script(_REOPEN_LUA)
    if not reopen(keys=[status.job_key(job_id), status.active_key], args=[f"{time.time():.6f}", job_id,
                                                                          "1" if from_start else ""]):
        return False
    status.emit(job_id, "requeued", stage=stage)
    return True
