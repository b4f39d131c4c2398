"""Putting jobs on the queue: the Python way in, used by every door.

Messages are built and enqueued directly rather than through the actor
objects, so that submitting does not import the model code.
"""

from __future__ import annotations

from dataclasses import dataclass

from queue_config.jobs import JobSpec
from queue_config.prompt_screen import screen_prompt
from queue_config.stages import stage_plan
from workers.broker import FramequeueBroker
from workers.jobs.messages import StageMessage, stage_message
from workers.jobs.reconciler import Reconciler
from workers.jobs.record import JobStatusStore


def accept_jobs(
    broker: FramequeueBroker, status: JobStatusStore, specs: list[JobSpec], *, emit: bool = True
) -> list[bool]:
    """Record validated jobs and enqueue their first stages, each job all or nothing. For each, whether it was new."""
    first = {spec.id: stage_message(stage_plan(spec.kind)[0], StageMessage(job=spec)) for spec in specs}
    for message in first.values():
        broker.declare_queue(message.queue_name)
    return status.accept_many(specs, lambda spec: stage_plan(spec.kind),
                              lambda spec: broker.queued_message(first[spec.id]), emit=emit)


@dataclass(frozen=True)
class Submission:
    job_id: str
    state: str
    #: False when a job with this id had already been submitted (nothing was enqueued again).
    created: bool
    reason: str = ""


def submit_job(broker: FramequeueBroker, status: JobStatusStore, spec: JobSpec) -> Submission:
    """Screen, record and enqueue a validated job. Submitting the same id twice enqueues it once.

    ``queued`` means accepted: the record and the first message are in Redis together. A job
    resubmitted after it lost its message (see ``Reconciler``) is sent on again.
    """
    plan = stage_plan(spec.kind)
    reason = screen_prompt(spec.prompt)
    if reason:
        created = status.create(spec, plan, state="blocked", error=reason)
        return Submission(spec.id, "blocked", created, reason)
    if not accept_jobs(broker, status, [spec])[0]:
        reconciler = Reconciler(status, broker)
        if reconciler.lost([spec.id]):
            reconciler.repair(spec.id)
        return Submission(spec.id, status.state_of(spec.id) or "unknown", created=False)
    return Submission(spec.id, "queued", created=True)
