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
from workers.jobs.messages import StageMessage
from workers.jobs.record import JobStatusStore


def enqueue_stage(broker: dramatiq.Broker, stage: str, message: StageMessage) -> None:
    """Send ``message`` to ``stage``'s actor on its queue."""
    name = STAGES[stage].actor_name(message.job.priority)
    broker.declare_queue(name)
    payload = message.model_dump(mode="json")
    broker.enqueue(dramatiq.Message(queue_name=name, actor_name=name, args=(payload,), kwargs={}, options={}))


@dataclass(frozen=True)
class Submission:
    job_id: str
    state: str
    #: False when a job with this id had already been submitted (nothing was enqueued again).
    created: bool
    reason: str = ""


def submit_job(broker: dramatiq.Broker, status: JobStatusStore, spec: JobSpec) -> Submission:
    """Screen, record and enqueue a validated job. Submitting the same id twice enqueues it once."""
    plan = stage_plan(spec.kind)
    reason = screen_prompt(spec.prompt)
    if reason:
        created = status.create(spec, plan, state="blocked", error=reason)
        return Submission(spec.id, "blocked", created, reason)
    if not status.create(spec, plan):
        return Submission(spec.id, status.state_of(spec.id) or "unknown", created=False)
    enqueue_stage(broker, plan[0], StageMessage(job=spec))
    return Submission(spec.id, "queued", created=True)
