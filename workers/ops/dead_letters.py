"""Dead-lettered messages: list them with the reason recorded, requeue them, delete them.

Broker-side ids (``redis_message_id``) differ from dramatiq's ``message_id``, under which
framequeue records why a message was dead-lettered. A worker dead-letters bytes it could not decode
as they came, under their broker-side id alone (see ``FramequeueConsumer``): bodies are read here
without decoding, and one that is not a message is listed by that id, with no actor or job.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any, cast

import dramatiq
from dramatiq.common import q_name
from dramatiq.errors import DecodeError
from redis.client import NEVER_DECODE

from queue_config.stages import stage_of_actor
from workers.jobs.record import JobStatusStore
from workers.jobs.reopen import reopen_failed_job
from workers.middleware.rate_limit import BOOKED_SLOT_OPTION
from workers.ops.queues import job_id_of, message_fields

#: Dead letters listed per queue, newest first.
DEAD_LETTERS_LIMIT = 200
#: Message options dropped on requeue, so that the message starts over (all its retries, no eta).
RESET_OPTIONS = ("redis_message_id", "retries", "traceback", "eta", BOOKED_SLOT_OPTION)


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


def dead_letters(status: JobStatusStore, queue: str, limit: int = DEAD_LETTERS_LIMIT) -> list[DeadLetter]:
    """The newest dead letters of ``queue``, with the reason recorded for each (if any)."""
    ns, client = status.namespace, status.client
    entries = cast("list[tuple[str, float]]", client.zrevrange(f"{ns}:{queue}.XQ", 0, limit - 1, withscores=True))
    if not entries:
        return []
    redis_ids = [redis_id for redis_id, _ in entries]
    raw = client.execute_command("HMGET", f"{ns}:{queue}.XQ.msgs", *redis_ids, **{NEVER_DECODE: True})
    bodies = [message_fields(body) for body in raw]
    message_ids = [_text(body, "message_id") or redis_id for body, redis_id in zip(bodies, redis_ids, strict=True)]
    # A worker records why it dead-lettered what it could not decode under the broker-side id.
    reasons = cast("list[str | None]", client.hmget(status.dead_letters_key, [*message_ids, *redis_ids]))
    found = []
    for (redis_id, dead_ms), body, message_id, by_message_id, by_redis_id in zip(
        entries, bodies, message_ids, reasons[: len(entries)], reasons[len(entries) :], strict=True
    ):
        recorded = json.loads(by_message_id or by_redis_id or "{}")
        retries = body.get("options", {}).get("retries", 0)
        found.append(DeadLetter(
            queue, redis_id, message_id, _text(body, "actor_name"), recorded.get("job_id") or job_id_of(body),
            recorded.get("reason", ""), dead_ms / 1000, retries if isinstance(retries, int) else 0,
        ))
    return found


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def requeue_dead_letter(broker: dramatiq.Broker, status: JobStatusStore, queue: str, redis_id: str) -> bool:
    """Put a dead letter back on its queue, through the broker, with its retries reset.

    A failed job it names is reopened (see ``reopen_failed_job``) so that its stages may run again,
    from the stage of the letter. False if the letter is gone already, or is not a message (bytes a
    worker could not decode stay where they are, to be deleted).
    """
    ns, client = status.namespace, status.client
    data = client.execute_command("HGET", f"{ns}:{queue}.XQ.msgs", redis_id, **{NEVER_DECODE: True})
    try:
        message = dramatiq.Message.decode(data) if data is not None else None
    except DecodeError:
        return False
    pipe = client.pipeline(transaction=True)
    pipe.zscore(f"{ns}:{queue}.XQ", redis_id)
    pipe.zrem(f"{ns}:{queue}.XQ", redis_id)
    dead_ms, removed = pipe.execute()
    if not removed or message is None:
        return False
    options = {name: value for name, value in message.options.items() if name not in RESET_OPTIONS}
    fresh = replace(message, queue_name=q_name(message.queue_name), options=options,
                    message_timestamp=int(time.time() * 1000))
    client.hdel(status.dead_letters_key, *{_text(message.asdict(), "message_id") or redis_id, redis_id})
    if job_id := job_id_of(message.asdict()):
        reopen_failed_job(status, job_id, from_start=False, stage=stage_of_actor(message.actor_name))
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
    data = client.execute_command("HGET", f"{ns}:{queue}.XQ.msgs", redis_id, **{NEVER_DECODE: True})
    pipe = client.pipeline(transaction=True)
    pipe.zrem(f"{ns}:{queue}.XQ", redis_id)
    pipe.hdel(f"{ns}:{queue}.XQ.msgs", redis_id)
    pipe.hdel(status.dead_letters_key, *{_text(message_fields(data), "message_id") or redis_id, redis_id})
    return bool(pipe.execute()[0])
