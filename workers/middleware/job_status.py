"""Keeps each job's record in step with the messages that carry it.

Stages never write their own status: this middleware marks a stage running
before it starts (skipping messages of jobs that have already finished),
records what the stage returned (its ``StageOutcome``: timing, artifacts,
fields, a final state) when it ends, and on a message's final failure marks
the job failed and records why the message was dead-lettered. Each of these
is one round trip to Redis.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware, SkipMessage

from workers.job_status import JobStatusStore
from workers.outcome import StageOutcome

#: Longest error text kept in a job record.
MAX_ERROR_CHARS = 2000


def job_id_of(message: dramatiq.Message) -> str:
    """The job id inside a stage message, or "" when the payload is too broken to have one."""
    payload = message.args[0] if message.args else None
    job = payload.get("job") if isinstance(payload, dict) else None
    job_id = job.get("id") if isinstance(job, dict) else None
    return job_id if isinstance(job_id, str) else ""


class JobStatusMiddleware(Middleware):
    """Records stage starts, outcomes and final failures in the job's record."""

    def __init__(self, store: JobStatusStore) -> None:
        self.store = store
        self._started = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        self._started.at = time.monotonic()
        job_id = job_id_of(message)
        if job_id and self.store.stage_started(job_id, message.actor_name) == 0:
            raise SkipMessage(f"job {job_id} has already finished")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        job_id = job_id_of(message)
        if exception is None:
            if job_id:
                outcome = result if isinstance(result, StageOutcome) else None
                self.store.stage_finished(job_id, message.actor_name, time.monotonic() - self._started.at, outcome)
            return
        reason = f"{type(exception).__name__}: {exception}"[:MAX_ERROR_CHARS]
        if message.failed:
            self.store.stage_failed(job_id, message.actor_name, reason, message.message_id)
        elif job_id:
            self.store.emit(job_id, "retrying", stage=message.actor_name, error=reason)
