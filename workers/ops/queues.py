"""Queues and workers as an operator sees them, read from Redis.

Queue keys are dramatiq's Redis broker's (see ``dramatiq/brokers/redis/dispatch.lua``): a list of
message ids per queue with the bodies in a ``.msgs`` hash, a ``.DQ`` pair for delayed messages, a
``.XQ`` sorted set (by dead-letter time, ms) plus its ``.XQ.msgs`` hash, one
``__acks__.{worker}.{queue}`` set per worker holding what it has fetched, and the ``__heartbeats__``
sorted set. Every stage has two queues, its interactive one (``image``) and its batch one
(``image_batch``, see ``queue_config.stages``), and a stage that runs a catalog model has that pair
per model (``image.sd-turbo``, ``image_batch.sd-turbo``); each is listed on its own, so a batch
backlog shows beside the interactive queue and one model's depth beside another's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from typing import Any, cast

from queue_config.catalog import Catalog, catalog_of
from queue_config.settings import get_settings
from queue_config.stages import STAGES, is_batch_queue, model_of_actor, stage_of_actor
from workers.jobs.messages import job_id_in
from workers.jobs.record import JobStatusStore
from workers.keys.pool import redis_now_ms

#: Removes the messages of a queue no worker has fetched yet and returns their bodies.
#: KEYS: [queue list, message hash].
_TAKE_ALL_LUA = """
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
local bodies = {}
for i = 1, #ids, 1000 do
  local chunk = {unpack(ids, i, math.min(i + 999, #ids))}
  for _, body in ipairs(redis.call('HMGET', KEYS[2], unpack(chunk))) do
    if body then table.insert(bodies, body) end
  end
  redis.call('HDEL', KEYS[2], unpack(chunk))
end
return bodies
"""
#: Delayed messages read for one listing, at most: the soonest due are picked among these.
DELAYED_READ_MAX = 1000


@dataclass(frozen=True)
class QueueStats:
    """Message counts of one stage queue (interactive, or the stage's batch queue)."""

    name: str
    #: Waiting for a worker to fetch them.
    ready: int
    #: Retries and put-back messages waiting for their time (fetched by a worker or not).
    delayed: int
    #: Fetched by a worker and not yet acknowledged (running, or prefetched).
    in_flight: int
    dead: int

    @property
    def stage(self) -> str:
        """The stage whose messages this queue carries (``image`` for ``image_batch.sd-turbo``)."""
        return stage_of_actor(self.name)

    @property
    def model(self) -> str | None:
        """The catalog model whose messages this queue carries (None for a stage without models)."""
        return model_of_actor(self.name)

    @property
    def batch(self) -> bool:
        return is_batch_queue(self.name)


@dataclass(frozen=True)
class WorkerInfo:
    """One broker connection that has sent a heartbeat: a worker process, or a producer."""

    id: str
    heartbeat_age_s: float
    alive: bool
    #: Messages fetched and not acknowledged, by queue.
    in_flight: dict[str, int]


@dataclass(frozen=True)
class DelayedMessage:
    """A message waiting for its time: a retry's backoff, or a put-back's wait (quota, key, slot)."""

    message_id: str
    job_id: str
    #: When it may run (epoch s): dramatiq's ``eta`` option.
    due_at: float
    retries: int


def queue_names(catalog: Catalog | None = None) -> list[str]:
    """Every stage queue in stage order, a model stage's by model in ``catalog`` order (default: the
    process settings' catalog), each interactive queue before its batch queue."""
    catalog = catalog or catalog_of(get_settings())
    return [queue for stage, options in STAGES.items()
            for model in catalog.queue_models(stage)
            for queue in options.queue_names(model)]


def message_fields(body: bytes | str | None) -> dict[str, Any]:
    """A stored message body as its fields; empty for one that is gone or is not a dramatiq message."""
    try:
        fields = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        return {}
    shaped = isinstance(fields, dict) and isinstance(fields.get("args", []), list) and isinstance(
        fields.get("options", {}), dict)
    return fields if shaped else {}


def job_id_of(body: dict[str, Any]) -> str:
    """The job id a stage message's decoded body names, or "" when it is too broken to name one."""
    args = body.get("args")
    return job_id_in(args) if isinstance(args, (list, tuple)) else ""


def broker_heartbeats(status: JobStatusStore, heartbeat_timeout_ms: int) -> list[WorkerInfo]:
    """Every broker that sent a heartbeat, most recent first. Idle workers poll, so theirs stay fresh."""
    ns, client = status.namespace, status.client
    beats = cast("list[tuple[str, float]]", client.zrevrange(f"{ns}:__heartbeats__", 0, -1, withscores=True))
    pipe = client.pipeline(transaction=False)
    for worker_id, _ in beats:
        for queue in queue_names():
            pipe.scard(f"{ns}:__acks__.{worker_id}.{queue}")
    counts = iter(pipe.execute())
    now_ms = redis_now_ms(client)
    found = []
    for worker_id, beat_ms in beats:
        in_flight = {queue: count for queue in queue_names() if (count := next(counts))}
        age_ms = max(0.0, now_ms - beat_ms)
        found.append(WorkerInfo(worker_id, age_ms / 1000, age_ms < heartbeat_timeout_ms, in_flight))
    return found


def queue_stats(status: JobStatusStore) -> list[QueueStats]:
    """Counts for every stage queue, batch queues included, in the order of ``queue_names()``."""
    ns, client = status.namespace, status.client
    worker_ids = cast("list[str]", client.zrange(f"{ns}:__heartbeats__", 0, -1))
    pipe = client.pipeline(transaction=False)
    for queue in queue_names():
        pipe.llen(f"{ns}:{queue}")
        pipe.hlen(f"{ns}:{queue}.DQ.msgs")
        pipe.zcard(f"{ns}:{queue}.XQ")
        for worker_id in worker_ids:
            pipe.scard(f"{ns}:__acks__.{worker_id}.{queue}")
    replies = iter(pipe.execute())
    stats = []
    for queue in queue_names():
        ready, delayed, dead = next(replies), next(replies), next(replies)
        in_flight = sum(next(replies) for _ in worker_ids)
        stats.append(QueueStats(queue, ready, delayed, in_flight, dead))
    return stats


def ready_messages(status: JobStatusStore, queue: str, limit: int = 50) -> list[dict[str, Any]]:
    """The next ``limit`` messages a worker will fetch from ``queue``: their decoded bodies, in order."""
    ns, client = status.namespace, status.client
    ids = cast("list[str]", client.lrange(f"{ns}:{queue}", 0, limit - 1))
    bodies = cast("list[str | None]", client.hmget(f"{ns}:{queue}.msgs", ids)) if ids else []
    return [fields for body in bodies if (fields := message_fields(body))]


def delayed_messages(status: JobStatusStore, queue: str, limit: int = 50) -> tuple[list[DelayedMessage], int]:
    """The soonest due of ``queue``'s delayed messages, and how many were looked at.

    dramatiq keeps them on the ``{queue}.DQ`` queue (bodies in its ``.msgs`` hash, also while a
    worker holds one until its eta). At most ``DELAYED_READ_MAX`` are read, so on a longer delay
    queue these are the soonest of those read, not of all.
    """
    entries = islice(status.client.hscan_iter(f"{status.namespace}:{queue}.DQ.msgs", count=500), DELAYED_READ_MAX)
    found, read = [], 0
    for _, body in entries:
        read += 1
        fields = message_fields(body)
        eta_ms, retries = fields.get("options", {}).get("eta", 0), fields.get("options", {}).get("retries", 0)
        found.append(DelayedMessage(str(fields.get("message_id", "")), job_id_of(fields),
                                    eta_ms / 1000 if isinstance(eta_ms, (int, float)) else 0.0,
                                    retries if isinstance(retries, int) else 0))
    return sorted(found, key=lambda message: message.due_at)[:limit], read


def empty_queue(status: JobStatusStore, queue: str) -> int:
    """Remove the ready and delayed messages no worker has fetched, and cancel the jobs they carried.

    Messages a worker holds (running, or waiting for their eta in its memory) are not touched.
    Returns how many messages were removed.
    """
    ns, take_all = status.namespace, status.client.register_script(_TAKE_ALL_LUA)
    bodies = [*take_all(keys=[f"{ns}:{queue}", f"{ns}:{queue}.msgs"]),
              *take_all(keys=[f"{ns}:{queue}.DQ", f"{ns}:{queue}.DQ.msgs"])]
    for job_id in {job_id_of(json.loads(body)) for body in bodies} - {""}:
        status.cancel(job_id)
    return len(bodies)
