"""The middleware of stages that call remote providers: key rotation and per-model rate limits."""

from __future__ import annotations

import dramatiq

from workers.limits import RedisLimiter
from workers.middleware import JobStatusMiddleware, KeyRotation, ModelRateLimits
from workers.runtime import Runtime


def add_remote_middleware(broker: dramatiq.Broker, runtime: Runtime) -> None:
    """Gate remote stages on their key pools and model limits, ahead of the job-status middleware.

    Ahead, so that a message put back to wait is not counted as an attempt.
    """
    config = runtime.remote_config
    if not config.stages:
        return
    pools = runtime.key_pools
    broker.add_middleware(
        KeyRotation({stage: pools.pools[route.provider] for stage, route in config.stages.items()}),
        before=JobStatusMiddleware,
    )
    limits = {stage: limits for stage, route in config.stages.items() if (limits := config.limits_for(route))}
    limiter = RedisLimiter(runtime.status.client, runtime.settings.namespace)
    broker.add_middleware(ModelRateLimits(limiter, limits), before=JobStatusMiddleware)
