"""What an operator sees and does, read from Redis: queues, workers, dead letters, throughput.

The dashboard and ``/metrics`` share these reads. Queue keys are dramatiq's Redis broker's (see
``dramatiq/brokers/redis/dispatch.lua``): a list of message ids per queue with the bodies in a
``.msgs`` hash, a ``.DQ`` pair for delayed messages, a ``.XQ`` sorted set (by dead-letter time,
ms) plus its ``.XQ.msgs`` hash, one ``__acks__.{worker}.{queue}`` set per worker holding what it
has fetched, and the ``__heartbeats__`` sorted set. Every stage has two queues, its interactive one
(``image``) and its batch one (``image_batch``, see ``queue_config.stages``); each is listed on its
own, so a batch backlog shows beside the interactive queue. Broker-side ids (``redis_message_id``) differ
from dramatiq's ``message_id``, under which framequeue records why a message was dead-lettered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import dramatiq
from dramatiq.common import q_name

from queue_config.stages import STAGES, stage_of_actor
from workers.job_status import JobStatusStore
from workers.keys.pool import redis_now_ms
from workers.middleware.rate_limit import BOOKED_SLOT_OPTION

#: Dead letters listed per queue, newest first.
DEAD_LETTERS_LIMIT = 200
#: Message options dropped on requeue, so that the message starts over (all its retries, no eta).
RESET_OPTIONS = ("redis_message_id", "retries", "traceback", "eta", BOOKED_SLOT_OPTION)
#: Events read per XRANGE call.
EVENTS_PAGE = 1000
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
        """The stage whose messages this queue carries (``image`` for ``image_batch``)."""
        return stage_of_actor(self.name)

    @property
    def batch(self) -> bool:
        return self.name != self.stage


@dataclass(frozen=True)
class WorkerInfo:
    """One broker connection that has sent a heartbeat: a worker process, or a producer."""

    id: str
    heartbeat_age_s: float
    alive: bool
    #: Messages fetched and not acknowledged, by queue.
    in_flight: dict[str, int]


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered message, and why (as the job-status middleware recorded it)."""

    queue: str
    #: The broker's id of the message: what requeue and delete are given.
    redis_id: str
    message_id: str
    actor: str
    job_id: str
    reason: str
    dead_at: float
    #: How many times dramatiq retried it before giving up.
    retries: int


@dataclass(frozen=True)
class MinuteCounts:
    """Jobs that ended in one minute (``start``: epoch s)."""

    start: float
    succeeded: int
    failed: int


def queue_names() -> list[str]:
    """Every stage queue in stage order, each stage's interactive queue before its batch queue."""
    return [queue for options in STAGES.values() for queue in options.queue_names()]


def job_id_of(body: dict[str, Any]) -> str:
    """The job id a stage message names, or "" when its payload is too broken to name one."""
    args = body.get("args") or [None]
    job = args[0].get("job") if isinstance(args[0], dict) else None
    job_id = job.get("id") if isinstance(job, dict) else None
    return job_id if isinstance(job_id, str) else ""


def workers(status: JobStatusStore, heartbeat_timeout_ms: int) -> list[WorkerInfo]:
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
    return [json.loads(body) for body in bodies if body]


def dead_letters(status: JobStatusStore, queue: str, limit: int = DEAD_LETTERS_LIMIT) -> list[DeadLetter]:
    """The newest dead letters of ``queue``, with the reason recorded for each (if any)."""
    ns, client = status.namespace, status.client
    entries = cast("list[tuple[str, float]]", client.zrevrange(f"{ns}:{queue}.XQ", 0, limit - 1, withscores=True))
    if not entries:
        return []
    raw = cast("list[str | None]", client.hmget(f"{ns}:{queue}.XQ.msgs", [redis_id for redis_id, _ in entries]))
    bodies = [json.loads(body) if body else {} for body in raw]
    reasons = cast("list[str | None]", client.hmget(status.dead_letters_key, [b.get("message_id", "") for b in bodies]))
    found = []
    for (redis_id, dead_ms), body, reason in zip(entries, bodies, reasons, strict=True):
        recorded = json.loads(reason) if reason else {}
        found.append(DeadLetter(
            queue, redis_id, body.get("message_id", ""), body.get("actor_name", ""),
            recorded.get("job_id") or job_id_of(body), recorded.get("reason", ""), dead_ms / 1000,
            int(body.get("options", {}).get("retries", 0)),
        ))
    return found


def requeue_dead_letter(broker: dramatiq.Broker, status: JobStatusStore, queue: str, redis_id: str) -> bool:
    """Put a dead letter back on its queue, through the broker, with its retries reset.

    A failed job it names is set back to ``queued`` (a plain HSET: the store's transitions never
    leave a final state) so that its stages may run again. False if the letter is gone already.
    """
    ns, client = status.namespace, status.client
    pipe = client.pipeline(transaction=True)
    pipe.hget(f"{ns}:{queue}.XQ.msgs", redis_id)
    pipe.zscore(f"{ns}:{queue}.XQ", redis_id)
    pipe.zrem(f"{ns}:{queue}.XQ", redis_id)
    data, dead_ms, removed = pipe.execute()
    if not removed or data is None:
        return False
    message = dramatiq.Message.decode(data.encode())
    options = {name: value for name, value in message.options.items() if name not in RESET_OPTIONS}
    fresh = replace(message, queue_name=q_name(message.queue_name), options=options,
                    message_timestamp=int(time.time() * 1000))
    client.hdel(status.dead_letters_key, message.message_id)
    job_id = job_id_of(message.asdict())
    if job_id and status.state_of(job_id) == "failed":
        client.hset(status.job_key(job_id), mapping={"state": "queued", "error": "", "updated_at": time.time()})
        status.emit(job_id, "requeued", stage=stage_of_actor(message.actor_name))
    try:
        broker.enqueue(fresh)
    except Exception:
        client.zadd(f"{ns}:{queue}.XQ", {redis_id: dead_ms})
        raise
    client.hdel(f"{ns}:{queue}.XQ.msgs", redis_id)
    return True


def delete_dead_letter(status: JobStatusStore, queue: str, redis_id: str) -> bool:
    """Drop a dead letter and its recorded reason. False if it was gone already."""
    ns, client = status.namespace, status.client
    data = cast("str | None", client.hget(f"{ns}:{queue}.XQ.msgs", redis_id))
    pipe = client.pipeline(transaction=True)
    pipe.zrem(f"{ns}:{queue}.XQ", redis_id)
    pipe.hdel(f"{ns}:{queue}.XQ.msgs", redis_id)
    if data:
        pipe.hdel(status.dead_letters_key, json.loads(data).get("message_id", ""))
    return bool(pipe.execute()[0])


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


def events_since(status: JobStatusStore, start_id: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Every event in the stream after ``start_id`` (exclusive), oldest first, a page at a time."""
    while True:
        page = cast("list[tuple[str, dict[str, str]]]",
                    status.client.xrange(status.events_key, min=f"({start_id}", max="+", count=EVENTS_PAGE))
        yield from page
        if len(page) < EVENTS_PAGE:
            return
        start_id = page[-1][0]


def throughput(status: JobStatusStore, minutes: int = 60) -> list[MinuteCounts]:
    """Jobs that succeeded and failed in each of the last ``minutes`` minutes (Redis's clock), oldest first."""
    first_ms = (int(redis_now_ms(status.client)) // 60_000 - minutes + 1) * 60_000
    counts = {"succeeded": [0] * minutes, "failed": [0] * minutes}
    for event_id, fields in events_since(status, f"{first_ms - 1}-{2**64 - 1}"):
        minute = (int(event_id.split("-")[0]) - first_ms) // 60_000
        if fields.get("event") in counts and minute < minutes:
            counts[fields["event"]][minute] += 1
    return [MinuteCounts((first_ms + 60_000 * i) / 1000, counts["succeeded"][i], counts["failed"][i])
            for i in range(minutes)]


def job_counts(status: JobStatusStore) -> dict[str, int]:
    """How many recorded jobs are in each state (one HGET per job, pipelined a thousand at a time)."""
    counts: dict[str, int] = {}
    start = 0
    while ids := cast("list[str]", status.client.zrange(status.index_key, start, start + 999)):
        pipe = status.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(status.job_key(job_id), "state")
        for state in filter(None, pipe.execute()):
            counts[state] = counts.get(state, 0) + 1
        start += len(ids)
    return counts
