"""Wiring for stages that call remote providers: clients, key pools, and their middleware."""

from __future__ import annotations

import dramatiq

from pipelines.remote import OpenAICompatibleClient, ProviderClient, ReplicateClient
from queue_config.remote import ProviderConfig, RemoteConfig
from workers.keys import KeyPool, KeyPools
from workers.limits import RedisLimiter
from workers.middleware import JobStatusMiddleware, KeyRotation, ModelRateLimits
from workers.runtime import Runtime


def provider_client(name: str, config: ProviderConfig) -> ProviderClient:
    """The client that speaks ``config.kind``'s API at ``config.base_url``."""
    client_class = {"openai": OpenAICompatibleClient, "replicate": ReplicateClient}[config.kind]
    return client_class(config.base_url, timeout_s=config.timeout_s, name=name)


def build_key_pools(runtime: Runtime, config: RemoteConfig) -> KeyPools:
    """A pool for every provider that a stage uses, with its keys loaded."""
    used = {route.provider for route in config.stages.values()}
    client, namespace = runtime.status.client, runtime.settings.namespace
    return KeyPools({
        name: KeyPool(client, namespace, name, provider, provider.load_keys())
        for name, provider in config.providers.items()
        if name in used
    })


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
