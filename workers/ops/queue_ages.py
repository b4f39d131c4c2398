"""How long the oldest ready message of each stage queue has been waiting for a worker.

dramatiq's Redis broker appends message ids to the queue's list and workers take from its head,
so the head is the message that has waited longest. A message is ready from its creation
(``message_timestamp``) or, when it was delayed (a retry's backoff, a put-back's wait), from its
``eta``, which it keeps when it is moved from the delay queue to the queue; the later of the two
counts. Both are producers' clocks in ms; "now" is Redis's clock.
"""

from __future__ import annotations

import json
from typing import cast

from workers.jobs.record import JobStatusStore
from workers.keys.pool import redis_now_ms
from workers.ops.queues import queue_names


def ready_since_ms(body: str) -> float | None:
    """When the message in ``body`` became ready (epoch ms); None when it cannot be read."""
    try:
        message = json.loads(body)
        return max(float(message.get("message_timestamp", 0)), float(message.get("options", {}).get("eta", 0)))
    except (ValueError, TypeError, AttributeError):
        return None


def oldest_ready_ages_s(status: JobStatusStore) -> dict[str, float]:
    """Each stage queue (batch queues included) -> seconds its oldest ready message has waited; 0 if empty."""
    ns, client = status.namespace, status.client
    pipe = client.pipeline(transaction=False)
    for queue in queue_names():
        pipe.lindex(f"{ns}:{queue}", 0)
    heads = cast("list[str | None]", pipe.execute())
    pipe = client.pipeline(transaction=False)
    for queue, head in zip(queue_names(), heads, strict=True):
        pipe.hget(f"{ns}:{queue}.msgs", head or "")
    bodies = cast("list[str | None]", pipe.execute())
    now_ms = redis_now_ms(client)
    ages = {}
    for queue, body in zip(queue_names(), bodies, strict=True):
        since_ms = ready_since_ms(body) if body else None
        ages[queue] = max(0.0, now_ms - since_ms) / 1000 if since_ms else 0.0
    return ages
