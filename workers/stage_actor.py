"""The shell every stage actor shares.

Validate the message, run the stage function, send the job on to its next
stage unless the outcome ends it, and hand the outcome over: the job-status
middleware records it (timing, artifacts, final state), not this shell. A stage
whose job is cancelled while it runs stops between steps (``pipelines.Interrupted``):
the shell records where, sends nothing on, and the message is acked, not retried.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, cast

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.logging import get_logger
from dramatiq.middleware import CurrentMessage

from pipelines.errors import Interrupted
from queue_config.catalog import Catalog, catalog_of
from queue_config.jobs import Priority
from queue_config.settings import get_settings
from queue_config.stages import BATCH_PRIORITY, INTERACTIVE_PRIORITY, STAGES, stage_plan
from workers.errors import Deferred, InvalidJob, ModelUnavailable, NoUsableKey
from workers.jobs.messages import StageMessage, enqueue_stage
from workers.jobs.outcome import StageOutcome, hand_over
from workers.jobs.running import running_job
from workers.jobs.stage_cache import StageCache
from workers.middleware.fallback import CANNOT_SERVE, fallbacks_of
from workers.middleware.job_status import JobStatusMiddleware
from workers.middleware.put_back import put_back
from workers.runtime import Runtime
from workers.stages import StageFunction


def next_stage(message: StageMessage, stage: str) -> str | None:
    plan = stage_plan(message.job.kind)
    position = plan.index(stage)
    return plan[position + 1] if position + 1 < len(plan) else None


def job_status_of(broker: dramatiq.Broker) -> JobStatusMiddleware | None:
    """The broker's job-status middleware: its view of cancelled jobs skips messages, and its writer
    sends the record's writes, a running stage's progress among them."""
    return next((m for m in broker.middleware if isinstance(m, JobStatusMiddleware)), None)


def declare_stage_actors(
    broker: dramatiq.Broker,
    functions: Mapping[str, StageFunction],
    runtime: Callable[[], Runtime],
    *,
    catalog: Catalog | None = None,
    max_age_ms: int | None = None,
    time_limits_ms: Mapping[str, int] | None = None,
    stage_cache: Callable[[Runtime], StageCache] | None = None,
) -> dict[str, dramatiq.Actor[..., None]]:
    """Declare two actors per stage on ``broker``, running ``functions[stage]``: ``stage`` for
    interactive jobs and ``stage_batch``, on its own queue at a lower priority, for batch jobs.
    A stage that runs a catalog model has that pair for each of its models in ``catalog``
    (``image.sd-turbo``, ``image_batch.sd-turbo``): a message is sent to the queue of the model that
    runs it, and a worker serves the queues of the models it holds. ``catalog`` defaults to the
    process settings'; the runtime's routes each message.

    A message older than ``max_age_ms`` (e.g. one that has waited that long for quota) fails. A
    stage runs at most ``time_limits_ms[stage]`` (default: its ``StageOptions.time_limit_ms``).
    With a ``stage_cache``, a stage whose inputs match an earlier run hands on that run's output
    instead of running (workers/jobs/stage_cache.py). A stage whose provider fails it is handed to
    the broker's fallback middleware, added before this is called, which may move it to the next
    model of its chain (workers/middleware/fallback.py).
    """
    job_status, fallbacks = job_status_of(broker), fallbacks_of(broker)
    cancelled, writer = (job_status.cancelled, job_status.writer) if job_status else (None, None)
    catalog = catalog or catalog_of(get_settings())
    logger = get_logger(__name__)

    def declare(stage: str, function: StageFunction, queue_model: str | None) -> Callable[[Any], None]:
        def run_stage(*args: Any, **kwargs: Any) -> None:
            if len(args) != 1 or kwargs:  # else a TypeError, retried as if it could pass next time
                raise InvalidJob(f"a stage message carries one payload, not {len(args)} and {len(kwargs)} by name")
            message = StageMessage.parse(args[0])
            if stage not in stage_plan(message.job.kind):
                raise InvalidJob(f"stage {stage!r} is not part of a {message.job.kind.value} job")
            resources = runtime()
            if queue_model is not None and resources.catalog.route(message.job, stage, message.models) != queue_model:
                message = message.with_model(stage, queue_model)  # the queue it came by decides (sender's catalog)
            if (refusal := resources.catalog.refusal(message.job)) is not None:
                raise InvalidJob(f"the catalog cannot serve this job: {refusal}")
            try:
                with running_job(message.job.id, cancelled, writer):
                    compute = partial(function, resources, message)
                    model = resources.catalog.route(message.job, stage, message.models)
                    outcome = stage_cache(resources).run(stage, message, compute, model) if stage_cache else compute()
            except Deferred as wait:
                current = cast(MessageProxy, CurrentMessage.get_current_message())
                put_back(broker, current, wait.delay_ms, wait.reason)
            except CANNOT_SERVE as error:  # the provider's failure, not the job's: it may move to a fallback
                if fallbacks is not None:
                    fallbacks.stage_failed(broker, cast(MessageProxy, CurrentMessage.get_current_message()), error)
                raise
            except Interrupted as stopped:  # the job was cancelled: it stays so, with where it stopped
                logger.info("Job %s was cancelled: %s stopped after %s.", message.job.id, stage, stopped.where)
                hand_over(StageOutcome(record={"stopped_at": f"{stage}: {stopped.where}"}))
                return
            hand_over(outcome)  # before the next stage is sent: the middleware records this end first
            following = next_stage(message, stage)
            if following is not None and not outcome.final_state:
                enqueue_stage(broker, following, message.with_refs(**outcome.refs), resources.catalog)

        run_stage.__name__ = stage
        return run_stage

    priorities = ((Priority.interactive, INTERACTIVE_PRIORITY), (Priority.batch, BATCH_PRIORITY))
    actors: dict[str, dramatiq.Actor[..., None]] = {}
    for stage, function in functions.items():
        options = STAGES[stage]
        models = catalog.queue_models(stage)
        for (priority, dramatiq_priority), model in itertools.product(priorities, models):
            name, run_stage = options.actor_name(priority, model), declare(stage, function, model)
            actors[name] = dramatiq.actor(
                actor_name=name,
                queue_name=name,
                priority=dramatiq_priority,
                broker=broker,
                max_retries=options.max_retries,
                min_backoff=options.min_backoff_ms,
                max_backoff=options.max_backoff_ms,
                time_limit=(time_limits_ms or {}).get(stage, options.time_limit_ms),
                throws=(InvalidJob, NoUsableKey, ModelUnavailable),
                max_age=max_age_ms,
            )(run_stage)
    return actors

