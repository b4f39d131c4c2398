"""The middleware of catalog models that call remote providers, have limits or fall back: fallbacks,
key rotation and per-model rate limits, each keyed by the catalog model a message's queue runs."""

from __future__ import annotations

import dramatiq

from queue_config.catalog import RemoteBackend
from workers.limits import ModelCooldowns, RedisLimiter
from workers.middleware import JobStatusMiddleware, KeyRotation, ModelFallbacks, ModelRateLimits
from workers.runtime import Runtime


def add_remote_middleware(broker: dramatiq.Broker, runtime: Runtime) -> None:
    """Gate catalog models on their fallbacks, key pools and model limits, ahead of the job-status middleware.

    Ahead, so that a message put back to wait, or moved to a fallback, is not counted as an attempt;
    fallbacks first, so that a message that moves on neither waits for a key nor takes a slot.
    """
    models = runtime.catalog.models.values()
    fallbacks = None
    if any(model.fallbacks for model in models):
        status = next(m for m in broker.middleware if isinstance(m, JobStatusMiddleware))
        cooldowns = ModelCooldowns(runtime.status.client, runtime.settings.namespace)
        fallbacks = ModelFallbacks(runtime.catalog, cooldowns, status=status)
        broker.add_middleware(fallbacks, before=JobStatusMiddleware)
    remote = {model.id: model.backend.provider for model in models if isinstance(model.backend, RemoteBackend)}
    if remote:
        pools = runtime.key_pools
        gated = {model: pools.pools[provider] for model, provider in remote.items() if provider in pools.pools}
        broker.add_middleware(KeyRotation(gated, fallbacks=fallbacks), before=JobStatusMiddleware)
    limits = {model.id: limits for model in models if (limits := model.rate_limits())}
    if limits:
        limiter = RedisLimiter(runtime.status.client, runtime.settings.namespace)
        broker.add_middleware(ModelRateLimits(limiter, limits), before=JobStatusMiddleware)
