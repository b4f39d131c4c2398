"""The middleware of catalog models that call remote providers or have limits: key rotation and
per-model rate limits, each keyed by the catalog model a message's queue runs."""

from __future__ import annotations

import dramatiq

from queue_config.catalog import RemoteBackend
from workers.limits import RedisLimiter
from workers.middleware import JobStatusMiddleware, KeyRotation, ModelRateLimits
from workers.runtime import Runtime


def add_remote_middleware(broker: dramatiq.Broker, runtime: Runtime) -> None:
    """Gate remote stages on their key pools and model limits, ahead of the job-status middleware.

    Ahead, so that a message put back to wait is not counted as an attempt.
    """
    models = runtime.catalog.models.values()
    remote = {model.id: model.backend.provider for model in models if isinstance(model.backend, RemoteBackend)}
    if remote:
        pools = runtime.key_pools
        broker.add_middleware(KeyRotation({model: pools.pools[provider] for model, provider in remote.items()}),
                              before=JobStatusMiddleware)
    limits = {model.id: limits for model in models if (limits := model.rate_limits())}
    if limits:
        limiter = RedisLimiter(runtime.status.client, runtime.settings.namespace)
        broker.add_middleware(ModelRateLimits(limiter, limits), before=JobStatusMiddleware)
