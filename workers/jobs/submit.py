"""Putting jobs on the queue: the Python way in, also used between stages.

Messages are built and enqueued directly rather than through the actor
objects, so that submitting does not import the model code.
"""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq

from queue_config.jobs import JobSpec
from queue_config.prompt_screen import screen_prompt
from queue_config.stages import STAGES, stage_plan
from workers.broker import FramequeueBroker
from workers.jobs.messages import StageMessage
from workers.jobs.record import JobStatusStore


def stage_message(stage: str, message: StageMessage) -> dramatiq.Message:
    """The dramatiq message that runs ``stage`` on ``message``, for the job's priority."""
    name = STAGES[stage].actor_name(message.job.priority)
    payload = message.model_dump(mode="json")
    return dramatiq.Message(queue_name=name, actor_name=name, args=(payload,), kwargs={}, options={})


def enqueue_stage(broker: dramatiq.Broker, stage: str, message: StageMessage) -> None:
    """Send ``message`` to ``stage``'s actor on its queue."""
    queued = stage_message(stage, message)
    broker.declare_queue(queued.queue_name)
    broker.enqueue(queued)


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

    ``queued`` means accepted: the record and the first message are in Redis together.
    """
    plan = stage_plan(spec.kind)
    reason = screen_prompt(spec.prompt)
    if reason:
        created = status.create(spec, plan, state="blocked", error=reason)
        return Submission(spec.id, "blocked", created, reason)
    if not accept_jobs(broker, status, [spec])[0]:
        return Submission(spec.id, status.state_of(spec.id) or "unknown", created=False)
    return Submission(spec.id, "queued", created=True)
