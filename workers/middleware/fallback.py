"""Moves a stage to the next model of its fallback chain when its model cannot serve.

A catalog model cannot serve (LiteLLM's router fallbacks and cooldowns are the bar) when:

- its provider has no usable key: every key is disabled (``NoUsableKey``, from the key-rotation
  gate before the stage runs, or from the call itself);
- its provider answered 5xx or timed out ``failures_before_fallback`` times in a row, counted
  over every worker: the model then cools down for ``cooldown_s`` (workers/limits/cooldowns.py),
  and while it does, its messages move on without trying it;
- a message has waited for it longer than its ``max_wait_s``, counted from when the message was
  put on the model's queue (dramatiq's ``message_timestamp``, which retries and put-backs keep).

A 4xx the job caused (``RequestRejected``), a failed generation or an unreadable answer is never
the provider's failure: those are retried and fail as they always did.

Moving sends the stage message, with ``models[stage]`` set to the next model, to that model's
queue as a new message (its retries and its ``max_wait_s`` clock start again) and acks this one:
no retry is spent, nothing is dead-lettered. The next model is the first, in the fallback lists
of the models tried so far (in the order they were tried), that has not been tried and can serve
the job; the models tried travel in a message option, so no chain can loop. The job's event
stream says ``fallback``, with the ``stage``, ``from_model``, ``to_model`` and ``reason``, and
webhooks send it like any other event. With no model left to try, the message goes on as it
would have without fallbacks.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.logging import get_logger
from dramatiq.middleware import Middleware, SkipMessage

from pipelines.remote.errors import ProviderTimeout, ProviderUnavailable
from queue_config.catalog import Catalog, CatalogModel
from queue_config.jobs import JobSpec
from queue_config.stages import model_of_actor, stage_of_actor
from workers.errors import InvalidJob, NoUsableKey
from workers.jobs.messages import StageMessage, stage_message
from workers.limits.cooldowns import ModelCooldowns
from workers.middleware.job_status import JobStatusMiddleware

#: The provider's failures, which count towards its model's cooldown: 5xx or no connection, timeouts.
PROVIDER_FAILURES: tuple[type[Exception], ...] = (ProviderUnavailable, ProviderTimeout)
#: What a stage may fail with that moves it on: a provider failure, or a provider with no usable key.
CANNOT_SERVE: tuple[type[Exception], ...] = (*PROVIDER_FAILURES, NoUsableKey)
#: Message option listing the models a stage message has moved away from, oldest first.
TRIED_OPTION = "framequeue_models_tried"


class MovedToFallback(SkipMessage):
    """The message was sent on to the next model of its chain; this delivery is acked."""


class ModelFallbacks(Middleware):
    """Moves the messages of catalog models that cannot serve to the next model of their chain.

    Parameters:
        catalog: The models, their fallbacks, ``max_wait_s``, ``failures_before_fallback``, ``cooldown_s``.
        cooldowns: Each model's provider failures in a row and its cooldown, shared by every worker.
        status: The job-status middleware, whose writer and scrubber the ``fallback`` events go through.
    """

    def __init__(self, catalog: Catalog, cooldowns: ModelCooldowns, *, status: JobStatusMiddleware) -> None:
        self.catalog = catalog
        self.cooldowns = cooldowns
        self.status = status
        self.logger = get_logger(__name__, type(self))
        #: The models a message may move away from: those with fallbacks, and those a fallback leads to.
        self.chained = {model.id for model in catalog.models.values() if model.fallbacks} | {
            fallback for model in catalog.models.values() for fallback in model.fallbacks}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        model = self._chained_model(message)
        if model is None:
            return
        waited_s = time.time() - message.message_timestamp / 1000
        if model.max_wait_s is not None and waited_s > model.max_wait_s:
            self.fall_back(broker, message, f"waited {waited_s:.1f} s for {model.id}, over its max_wait_s "
                                            f"of {model.max_wait_s:g} s")
        if not model.is_local and (why := self.cooldowns.cooling_down(model.id)) is not None:
            self.fall_back(broker, message, f"{model.id} is cooling down after {why}")

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None, exception: Any = None
    ) -> None:
        model = self._chained_model(message)
        if exception is None and model is not None and not model.is_local:
            self.cooldowns.succeeded(model.id)

    def stage_failed(self, broker: dramatiq.Broker, message: MessageProxy, error: Exception) -> None:
        """The stage of ``message`` failed with ``error``, one of :data:`CANNOT_SERVE`.

        Moves the message on (raising ``MovedToFallback``) when its provider has no usable key, or
        when this failure puts its model in its cooldown; returns when the message should be retried
        or failed as it would have been without fallbacks.
        """
        model = self._chained_model(message)
        if model is None:
            return
        reason = self.status.scrub(f"{type(error).__name__}: {error}")
        if isinstance(error, NoUsableKey):
            self.fall_back(broker, message, reason)
        elif isinstance(error, PROVIDER_FAILURES):
            cause = f"{model.failures_before_fallback} provider failures in a row (the last: {reason})"
            if self.cooldowns.failed(model.id, cause, failures_before=model.failures_before_fallback,
                                     cooldown_ms=round(model.cooldown_s * 1000)):
                self.fall_back(broker, message, f"{model.id} is cooling down after {cause}")

    def fall_back(self, broker: dramatiq.Broker, message: MessageProxy, reason: str) -> None:
        """Send ``message`` to the next model of its chain and skip this delivery (raises
        ``MovedToFallback``); return when no model is left to try."""
        stage, current = stage_of_actor(message.actor_name), model_of_actor(message.actor_name) or ""
        try:
            payload = StageMessage.parse(message.args[0] if message.args else None)
        except InvalidJob:  # the stage rejects it, saying why
            return
        tried = list(dict.fromkeys([self.catalog.route(payload.job, stage) or current,
                                    *message.options.get(TRIED_OPTION, []), current]))
        following = self.next_model(payload.job, tried)
        if following is None:
            return
        self._move(broker, payload, stage, tried, current, following, reason)

    def next_model(self, job: JobSpec, tried: list[str]) -> str | None:
        """The first model in the fallback lists of ``tried`` (in order) not yet tried that can serve ``job``."""
        models = self.catalog.models
        for model_id in tried:
            for fallback in models[model_id].fallbacks if model_id in models else ():
                if fallback not in tried and models[fallback].refusal(job) is None:
                    return fallback
        return None

    def _move(self, broker: dramatiq.Broker, payload: StageMessage, stage: str, tried: list[str], current: str,
              following: str, reason: str) -> NoReturn:
        moved = stage_message(stage, payload.with_model(stage, following), self.catalog)
        moved = moved.copy(options={TRIED_OPTION: tried})
        broker.declare_queue(moved.queue_name)
        broker.enqueue(moved)
        job_id, reason = payload.job.id, self.status.scrub(reason)
        self.status.writer.submit(lambda pipe: self.status.store.emit(
            job_id, "fallback", pipe, stage=stage, from_model=current, to_model=following, reason=reason))
        self.logger.warning("Job %s: %s moves from %s to %s: %s", job_id, stage, current, following, reason)
        raise MovedToFallback(reason)

    def _chained_model(self, message: MessageProxy) -> CatalogModel | None:
        model_id = model_of_actor(message.actor_name)
        return self.catalog.models.get(model_id) if model_id in self.chained else None


def fallbacks_of(broker: dramatiq.Broker) -> ModelFallbacks | None:
    """The broker's fallback middleware, which a stage actor tells of the failures that may move it on."""
    return next((m for m in broker.middleware if isinstance(m, ModelFallbacks)), None)
