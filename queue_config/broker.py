"""The dramatiq broker every framequeue process uses."""

from __future__ import annotations

import os

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Retries

from queue_config.embedded_redis import ensure_embedded_redis
from queue_config.settings import Settings


def resolve_redis_url(settings: Settings) -> str:
    """``REDIS_URL`` when set; otherwise the embedded server's URL (started if needed).

    The URL is exported to the environment so that child processes (dramatiq's
    worker processes) connect to the same server.
    """
    url = settings.redis_url or ensure_embedded_redis(settings.data_dir)
    os.environ["REDIS_URL"] = url
    return url


def build_broker(settings: Settings) -> RedisBroker:
    """A RedisBroker with dramatiq's default middleware plus framequeue's."""
    from workers.job_status import JobStatusStore
    from workers.middleware import JobStatusMiddleware

    url = resolve_redis_url(settings)
    broker = RedisBroker(
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
