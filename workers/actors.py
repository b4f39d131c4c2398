"""The stage actors, one per stage, each on its own queue.

Importing this module sets up the broker from the settings and declares every
actor: it is what ``dramatiq workers.actors`` loads.
"""

from __future__ import annotations

import dramatiq

from queue_config.settings import get_settings
from workers.batches.window import add_batch_middleware
from workers.broker import build_broker
from workers.middleware.registry import worker_registry
from workers.middleware.tenant_quotas import add_quota_middleware
from workers.remote import add_remote_middleware
from workers.runtime import get_runtime
from workers.stage_actor import declare_stage_actors
from workers.stages import STAGE_FUNCTIONS
from workers.stages.cache_identity import stage_cache_of

settings = get_settings()
broker = build_broker(settings)
runtime = get_runtime()
add_remote_middleware(broker, runtime)
add_batch_middleware(broker, runtime)
add_quota_middleware(broker, runtime.status)
broker.add_middleware(worker_registry(settings, runtime.served_models))
dramatiq.set_broker(broker)
ACTORS = declare_stage_actors(
    broker, STAGE_FUNCTIONS, get_runtime, catalog=runtime.catalog, max_age_ms=settings.stage_max_age_ms,
    time_limits_ms={stage: settings.stage_time_limit_ms(stage) for stage in STAGE_FUNCTIONS},
    stage_cache=stage_cache_of,
)
