"""The dramatiq broker every framequeue process uses."""

from __future__ import annotations

from uuid import uuid4

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.middleware import CurrentMessage, Retries

from queue_config.settings import Settings
from workers.embedded_redis import resolve_redis_url
from workers.jobs.record import JobStatusStore
from workers.middleware import JobStatusMiddleware


class FramequeueBroker(RedisBroker):
    """dramatiq's RedisBroker, plus ``enqueue_many``: thousands of messages in a few round trips.

    It runs the same dispatch script, with the same arguments, that ``RedisBroker.enqueue``
    runs for one message, through a pipeline; the enqueue hooks still run for each message.
    """

    def enqueue_many(self, messages: list[dramatiq.Message], *, chunk: int = 500) -> None:
        dispatch = self.scripts["dispatch"]
        for start in range(0, len(messages), chunk):
            sent = [m.copy(options={"redis_message_id": str(uuid4())}) for m in messages[start : start + chunk]]
            pipe = self.client.pipeline(transaction=False)
            for message in sent:
                self.emit_before("enqueue", message, None)
                args = [
                    "enqueue", current_millis(), message.queue_name, self.broker_id, self.heartbeat_timeout,
                    self.dead_message_ttl, self._should_do_maintenance("enqueue"), self._max_unpack_size(),
                    message.options["redis_message_id"], message.encode(),
                ]
                dispatch(args=args, keys=[self.namespace], client=pipe)
            pipe.execute()
            for message in sent:
                self.emit_after("enqueue", message, None)


def build_broker(settings: Settings) -> FramequeueBroker:
    """A RedisBroker with dramatiq's default middleware plus framequeue's."""
    url = resolve_redis_url(settings)
    broker = FramequeueBroker(
        url=url,
        namespace=settings.namespace,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        maintenance_chance=settings.maintenance_chance,
    )
    broker.add_middleware(CurrentMessage())
    # Before Retries in the list, so that its after-hooks (run in reverse) see the final verdict.
    status = JobStatusStore(redis.Redis.from_url(url, decode_responses=True), settings.namespace)
    broker.add_middleware(JobStatusMiddleware(status), before=Retries)
    return broker
