"""Where a queued job stands: how many messages are ahead of its next stage on that stage's queue.

The broker keeps each job's newest message in the in-flight pointers (queue and broker-side id,
see ``FramequeueBroker``); dramatiq's Redis queue is a list its consumers pop from the head, so
the message's index in that list is the number ahead of it. Two reads, and ``LPOS`` stops after
``MAX_SCAN`` entries: cheap enough for every status read. Approximate by nature: workers may
have prefetched messages that no longer count, and interactive work is served before batch work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from workers.jobs.record import JobStatusStore

#: The furthest into a queue the position is looked for; further back reads as unknown.
MAX_SCAN = 100_000


@dataclass(frozen=True)
class QueuePosition:
    queue: str
    #: Messages ahead of the job's on ``queue`` (0: it is next).
    ahead: int


def newest_message(status: JobStatusStore, job_id: str) -> tuple[str, str] | None:
    """The queue and broker-side id of the job's newest message (its in-flight pointer), or None."""
    pointer = cast("str | None", status.client.hget(status.inflight_key, job_id))
    if not pointer or "\t" not in pointer:
        return None
    queue, redis_id = pointer.split("\t", 1)
    return queue, redis_id


def queue_position(status: JobStatusStore, job_id: str) -> QueuePosition | None:
    """The job's place on its queue; None when its message is not waiting there (running, fetched, delayed)."""
    newest = newest_message(status, job_id)
    if newest is None:
        return None
    queue, redis_id = newest
    ahead = status.client.lpos(f"{status.namespace}:{queue}", redis_id, maxlen=MAX_SCAN)
    return QueuePosition(queue, int(cast(int, ahead))) if ahead is not None else None
