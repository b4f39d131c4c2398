"""Keeps each job's record in step with the messages that carry it.

Stages never write their own status: this middleware marks a stage running
before it starts, records what the stage returned (its ``StageOutcome``:
timing, artifacts, fields, a final state) when it ends, and on a message's
final failure marks the job failed and records why the message was
dead-lettered. Every write goes through a batching ``StatusWriter``; final
states are waited for, so they are in Redis before the message is acked.

Each run that starts is metered (pipelines/metering.py) and its usage (wall and
device seconds, provider calls, cost) is queued with the write that records how
it ended, returned, raised or put back (workers/jobs/usage.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.errors import ActorNotFound, DecodeError
from dramatiq.middleware import Middleware, SkipMessage

from pipelines.metering import start_meter, take_meter
from queue_config.jobs import JobKind
from queue_config.stages import STAGES, stage_of_actor, stage_plan
from workers.errors import InvalidJob, ModelUnavailable, NoUsableKey
from workers.jobs.cancellations import CancelledJobs
from workers.jobs.messages import job_named_by
from workers.jobs.outcome import StageOutcome, has_outcome, take_over
from workers.jobs.record import JobStatusStore
from workers.jobs.scrub import Scrubber, scrub_log_handlers, traceback_text
from workers.jobs.stage_stats import record_outcome, record_run
from workers.jobs.status_writer import StatusWriter
from workers.jobs.usage import StageRun, UsageRecorder
from workers.middleware.put_back import take_skip_reason

#: Longest error text kept in a job record.
MAX_ERROR_CHARS = 2000


def job_of(message: MessageProxy) -> tuple[str, int | None]:
    """The job id in a stage message and this stage's place in the job's plan.

    ("", None) when the payload is too broken to name a job: the stage rejects it.
    """
    job = job_named_by(message.args)
    if job is None:
        return "", None
    try:
        return job["id"], stage_plan(JobKind(job.get("kind", "image"))).index(stage_of_actor(message.actor_name))
    except ValueError:
        return job["id"], None


class JobStatusMiddleware(Middleware):
    """Records stage starts, outcomes and final failures in the job's record.

    ``scrub`` takes secrets out of every failure text recorded: reasons, and the traceback kept
    for a failed job (the broker drops dramatiq's own, unscrubbed, from the messages it enqueues),
    and out of what the worker logs. ``usage`` prices and keeps each run's usage (by default
    without cost: no catalog).
    """

    def __init__(
        self,
        store: JobStatusStore,
        *,
        writer: StatusWriter | None = None,
        on_batch_job_finished: Callable[[str], object] | None = None,
        scrub: Scrubber | None = None,
        usage: UsageRecorder | None = None,
    ) -> None:
        self.store = store
        self.usage = usage or UsageRecorder(None, retention_s=store.retention_s)
        self.scrub = scrub or Scrubber()
        self.writer = writer or StatusWriter(store.client)
        #: Called with the batch id after a batch job's final state is recorded.
        self.on_batch_job_finished = on_batch_job_finished
        self.cancelled = CancelledJobs(store)
        self._started = threading.local()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        scrub_log_handlers(self.scrub)
        self.writer.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.writer.stop()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._started.at = time.monotonic()
        job_id, stage_index = job_of(message)
        if job_id in self.cancelled:
            raise SkipMessage(f"job {job_id} was cancelled")
        self._started.message = message
        self._started.meter_of = message.message_id
        start_meter()
        if job_id and stage_index is not None:
            stage = stage_of_actor(message.actor_name)
            self.writer.submit(lambda pipe: self.store.stage_started(job_id, stage, stage_index, client=pipe))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            if getattr(self._started, "message", None) is message:
                self._record_end(message, take_over())
            return
        self._started.message = None
        take_over()
        stage = stage_of_actor(message.actor_name)
        run = self._run_of(message, None)
        reason = self.scrub(f"{type(exception).__name__}: {exception}")[:MAX_ERROR_CHARS]
        # A failure framequeue foresaw (a bad message, no key, a model that cannot load) is its reason
        # alone: the traceback would only show framequeue's own code.
        foreseen = isinstance(exception, (InvalidJob, NoUsableKey, ModelUnavailable))
        self._record_failure(message, stage, reason, run,
                             traceback="" if foreseen else traceback_text(exception, self.scrub))

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        """Queue the running stage's end before the job's next stage is sent: else a fast next
        stage could record the job's final state while this stage's end was still unwritten."""
        running = getattr(self._started, "message", None)
        if running is not None and has_outcome() and message.message_id != running.message_id:
            self._record_end(running, take_over())

    def _record_end(self, message: MessageProxy, outcome: StageOutcome) -> None:
        """Queue what a run of ``message`` returned (waited for when it ends the job), once per run."""
        self._started.message = None
        job_id, _ = job_of(message)
        run = self._run_of(message, outcome)
        if not job_id:
            return
        stage = stage_of_actor(message.actor_name)
        duration_s = run.wall_s if run else time.monotonic() - self._started.at

        def finished(pipe: Any) -> None:
            self.store.stage_finished(job_id, stage, duration_s, outcome, pipe)
            record_run(pipe, self.store.namespace, message.actor_name, duration_s)
            self._queue_usage(pipe, job_id, run)

        self.writer.submit(finished, wait=bool(outcome.final_state))
        if outcome.final_state:
            self._batch_job_finished(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """A message put back to wait, or failed before it ran (age limit, no usable key)."""
        job_id, _ = job_of(message)
        reason = take_skip_reason()
        stage = stage_of_actor(message.actor_name)
        run = self._run_of(message, None)
        if message.failed:
            self._record_failure(message, stage, reason or "AgeLimit: the message outlived its max age", run)
        elif job_id and (reason or run):

            def waiting(pipe: Any) -> None:
                if reason:
                    self.store.stage_waiting(job_id, stage, reason, pipe)
                self._queue_usage(pipe, job_id, run)

            self.writer.submit(waiting)

    def before_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """Say why a message that never reached an actor is dead-lettered.

        dramatiq nacks a message for an actor it does not know with ``ActorNotFound`` stuffed into
        it; the broker's consumer nacks what it cannot read with ``DecodeError`` (a stand-in whose id
        is the broker-side id). Any other nack follows a failure recorded by the hooks above.
        """
        exception = message._exception  # dramatiq's record of why (``stuff_exception``)
        if isinstance(exception, ActorNotFound):
            reason = f"ActorNotFound: no actor named {message.actor_name!r}"
        elif isinstance(exception, DecodeError):
            reason = f"DecodeError: {exception}"[:MAX_ERROR_CHARS]
        else:
            return
        self._record_failure(message, stage_of_actor(message.actor_name), reason, None)

    def _run_of(self, message: MessageProxy, outcome: StageOutcome | None) -> StageRun | None:
        """The usage of this thread's run of ``message`` (``outcome``: what it returned, None if it did not);
        None when this middleware did not start it (an earlier middleware skipped it) or it names no job."""
        if getattr(self._started, "meter_of", None) != message.message_id:
            return None
        self._started.meter_of = None
        wall_s, meter, job = time.monotonic() - self._started.at, take_meter(), job_named_by(message.args)
        if job is None or stage_of_actor(message.actor_name) not in STAGES:
            return None
        return self.usage.run_of(job, message.actor_name, meter, wall_s, outcome)

    def _queue_usage(self, pipe: Any, job_id: str, run: StageRun | None) -> None:
        if run is not None:
            self.usage.queue(pipe, self.store.namespace, self.store.job_key(job_id), run)

    def _record_failure(
        self, message: MessageProxy, stage: str, reason: str, run: StageRun | None, **fields: str
    ) -> None:
        job_id, _ = job_of(message)
        fields["dead_letter"] = f"{q_name(message.queue_name)}\t{message.options.get('redis_message_id', '')}"
        if message.failed:

            def failed(pipe: Any) -> None:
                self.store.stage_failed(job_id, stage, reason, message.message_id, pipe, **fields)
                record_outcome(pipe, self.store.namespace, message.actor_name, "failed")
                self._queue_usage(pipe, job_id, run)

            self.writer.submit(failed, wait=True)
            self._batch_job_finished(message)
        elif job_id:

            def retrying(pipe: Any) -> None:
                self.store.emit(job_id, "retrying", pipe, stage=stage, error=reason)
                record_outcome(pipe, self.store.namespace, message.actor_name, "retried")
                self._queue_usage(pipe, job_id, run)

            self.writer.submit(retrying)

    def _batch_job_finished(self, message: MessageProxy) -> None:
        job = job_named_by(message.args)
        batch_id = job.get("batch_id") if job else None
        if batch_id and self.on_batch_job_finished is not None:
            self.on_batch_job_finished(batch_id)
