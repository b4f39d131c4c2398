"""The dramatiq broker every framequeue process uses."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.middleware import CurrentMessage, Retries

from queue_config.catalog import catalog_of
from queue_config.settings import Settings
from workers.consumer import (
    WAKE_TOKENS_KEPT,
    FramequeueConsumer,
    WakeOnShutdown,
    around_dramatiq_dispatch,
    dispatch_args,
    wake_key,
)
from workers.embedded_redis import resolve_redis_url
from workers.jobs.messages import job_id_in
from workers.jobs.record import JobStatusStore, QueuedMessage
from workers.jobs.scrub import Scrubber, secrets_of
from workers.jobs.usage import UsageRecorder
from workers.middleware import JobStatusMiddleware
from workers.redis_connection import redis_client


class FramequeueBroker(RedisBroker):
    """dramatiq's RedisBroker that remembers where each job's newest message is, and enqueues in bulk.

    Every enqueue of a stage message also sets the job's in-flight pointer (queue and broker-side
    id) and pushes the queue's wake-up token (workers/consumer.py) in the same script call, so the
    reconciler can tell a job whose message was lost from one whose message is waiting or running.
    That script runs dramatiq's own dispatch script, with the arguments ``RedisBroker.enqueue``
    gives it, as a function (workers/enqueue.lua): one round trip per message, as dramatiq's, and
    no transaction or script check around it. The enqueue hooks still run for each message.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_middleware(WakeOnShutdown())
        self._enqueue_script = self.client.register_script(around_dramatiq_dispatch("enqueue.lua"))

    @property
    def consumer_class(self) -> type[FramequeueConsumer]:
        """Consumers woken by enqueues, which dead-letter poison instead of dying on it (``FramequeueConsumer``)."""
        return FramequeueConsumer

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        queued = self._with_redis_id(message, delay)
        self.emit_before("enqueue", queued, delay)
        self._enqueue_on(self.client, queued)
        self.emit_after("enqueue", queued, delay)
        return queued

    def enqueue_many(self, messages: list[dramatiq.Message], *, chunk: int = 500) -> None:
        """Enqueue ``messages`` with one transaction per ``chunk``."""
        for start in range(0, len(messages), chunk):
            sent = [self._with_redis_id(message, None) for message in messages[start : start + chunk]]
            pipe = self.client.pipeline(transaction=True)
            for message in sent:
                self.emit_before("enqueue", message, None)
                self._enqueue_on(pipe, message)
            pipe.execute()
            for message in sent:
                self.emit_after("enqueue", message, None)

    def queued_message(self, message: dramatiq.Message) -> QueuedMessage:
        """``message`` as it will lie on its queue, for a caller that writes it in its own script."""
        queued = self._with_redis_id(message, None)
        self.emit_before("enqueue", queued, None)
        return QueuedMessage(queued.queue_name, queued.options["redis_message_id"], queued.encode())

    def _with_redis_id(self, message: dramatiq.Message, delay: int | None) -> dramatiq.Message:
        """A copy with its own broker-side id (and, when delayed, the delay queue and an eta), as dramatiq makes it.

        The ``traceback`` option dramatiq's ``Retries`` sets is dropped: it may hold a secret (the job's
        record keeps the traceback scrubbed, see ``JobStatusMiddleware``).
        """
        queued = message.copy(options={"redis_message_id": str(uuid4())})
        queued.options.pop("traceback", None)  # the copy's own options
        if delay is None:
            return queued
        return queued.copy(queue_name=dq_name(queued.queue_name), options={"eta": current_millis() + delay})

    def _enqueue_on(self, client: redis.Redis | redis.client.Pipeline, message: dramatiq.Message) -> None:
        redis_id = message.options["redis_message_id"]
        job_id = job_id_in(message.args)
        self._enqueue_script(
            keys=[self.namespace, wake_key(self.namespace, message.queue_name), f"{self.namespace}:inflight"],
            args=[*dispatch_args(self, "enqueue", message.queue_name, redis_id, message.encode()),
                  WAKE_TOKENS_KEPT, job_id, f"{message.queue_name}\t{redis_id}" if job_id else ""],
            client=client,
        )


def build_broker(settings: Settings) -> FramequeueBroker:
    """A RedisBroker with dramatiq's default middleware plus framequeue's."""
    url = resolve_redis_url(settings)
    broker = FramequeueBroker(
        client=redis_client(url),
        namespace=settings.namespace,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        maintenance_chance=settings.maintenance_chance,
    )
    broker.add_middleware(CurrentMessage())
    # Before Retries in the list, so that its after-hooks (run in reverse) see the final verdict.
    status = JobStatusStore(redis_client(url, decode_responses=True), settings.namespace,
                            retention_s=settings.retention_s)
    # Usage is priced by the deployment's catalog, read when the first run ends (a process that runs no
    # stage never reads it).
    usage = UsageRecorder(lambda: catalog_of(settings), retention_s=settings.retention_s)
    broker.add_middleware(JobStatusMiddleware(status, scrub=Scrubber(secrets_of(settings)), usage=usage),
                          before=Retries)
    return broker
