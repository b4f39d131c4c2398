"""The message that travels between stage actors, and how it is put on a stage's queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dramatiq
from pydantic import BaseModel, ConfigDict, ValidationError

from queue_config.catalog import Catalog
from queue_config.jobs import JobSpec
from queue_config.stages import STAGES
from workers.errors import InvalidJob


class StageMessage(BaseModel):
    """A job plus references (storage keys) to what earlier stages made. Never the bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: JobSpec
    refs: dict[str, str] = {}
    #: Models that stages moved to from the job's own choice (fallbacks), by stage.
    models: dict[str, str] = {}

    @classmethod
    def parse(cls, payload: Any) -> StageMessage:
        """Validate a payload read off the queue (a dict, or JSON text).

        Raises:
          InvalidJob: with every validation error, one per line.
        """
        try:
            if isinstance(payload, (str, bytes)):
                return cls.model_validate_json(payload)
            return cls.model_validate(payload)
        except ValidationError as error:
            raise InvalidJob(describe_validation_error(error)) from None

    def with_refs(self, **refs: str) -> StageMessage:
        return StageMessage(job=self.job, refs={**self.refs, **refs}, models=self.models)

    def with_model(self, stage: str, model: str) -> StageMessage:
        """This message with ``stage`` moved to ``model`` (a fallback)."""
        return StageMessage(job=self.job, refs=self.refs, models={**self.models, stage: model})


def describe_validation_error(error: ValidationError) -> str:
    """A readable, bounded account of what is wrong with a message (no input values echoed)."""
    lines = [
        f"{'.'.join(str(part) for part in item['loc']) or '(message)'}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)
    ]
    return "invalid job: " + "; ".join(lines[:20])


def stage_message(stage: str, message: StageMessage, catalog: Catalog) -> dramatiq.Message:
    """The dramatiq message that runs ``stage`` on ``message``, on the queue of the job's priority and
    of the model ``catalog`` routes the stage to."""
    name = STAGES[stage].actor_name(message.job.priority, catalog.route(message.job, stage, message.models))
    payload = message.model_dump(mode="json")
    if not message.models:
        del payload["models"]  # a message without fallbacks reads as it did before they existed
    return dramatiq.Message(queue_name=name, actor_name=name, args=(payload,), kwargs={}, options={})


def enqueue_stage(broker: dramatiq.Broker, stage: str, message: StageMessage, catalog: Catalog) -> None:
    """Send ``message`` to ``stage``'s actor on its queue."""
    queued = stage_message(stage, message, catalog)
    broker.declare_queue(queued.queue_name)
    broker.enqueue(queued)


def job_named_by(args: Sequence[Any]) -> dict[str, Any] | None:
    """The job object a stage message's arguments carry, or None when they are too broken to name one."""
    payload = args[0] if args else None
    job = payload.get("job") if isinstance(payload, dict) else None
    return job if isinstance(job, dict) and isinstance(job.get("id"), str) else None


def job_id_in(args: Sequence[Any]) -> str:
    """The id of the job a stage message's arguments carry ("" for any other message)."""
    job = job_named_by(args)
    return job["id"] if job else ""
