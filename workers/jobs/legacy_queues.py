"""Messages left on a model stage's queue from before the catalog, moved to their model's queue.

Before the model catalog each model stage had one queue (``image``, ``image_batch``); now each of
its models has one (``image.sd-turbo``). A message still waiting on an old queue when a deployment
upgrades, or put back there by dramatiq when a worker of the old version died holding it, would
wait for a worker that no longer exists. Every reconciler pass moves such messages onto the queue
of the model the catalog routes them to (a delayed one keeps its time). Each is added there before
it leaves the old queue, so a pass cut short leaves at worst a second copy, which the stages'
content-addressed writes absorb; nothing is lost.
"""

from __future__ import annotations

from typing import cast

import dramatiq
from dramatiq.common import current_millis, dq_name

from queue_config.catalog import Catalog
from queue_config.jobs import Priority
from queue_config.stages import MODEL_STAGES, STAGES, is_batch_queue
from workers.broker import FramequeueBroker
from workers.errors import InvalidJob
from workers.jobs.messages import StageMessage

#: Messages moved per queue and pass, at most; the rest go on the next pass.
MOVE_MAX = 1000


def legacy_queues() -> list[tuple[str, str]]:
    """Each model stage's old queues (interactive and batch, and their delay queues), with the stage."""
    return [(stage, queue) for stage in MODEL_STAGES for legacy in STAGES[stage].queue_names()
            for queue in (legacy, dq_name(legacy))]


def move_legacy_messages(broker: FramequeueBroker, catalog: Catalog) -> int:
    """Move what waits on the old queues to the queues of the models that run it. Returns how many."""
    return sum(_move(broker, catalog, stage, queue) for stage, queue in legacy_queues())


def _move(broker: FramequeueBroker, catalog: Catalog, stage: str, queue: str) -> int:
    client, key = broker.client, f"{broker.namespace}:{queue}"
    moved = 0
    for redis_id in cast("list[bytes]", client.lrange(key, 0, MOVE_MAX - 1)):
        body = cast("bytes | None", client.hget(f"{key}.msgs", redis_id))
        if body is not None:
            message = dramatiq.Message.decode(body)
            target = _target_queue(catalog, stage, queue, message)
            eta = message.options.get("eta")
            delay = max(0, int(eta) - current_millis()) if queue.endswith(".DQ") and eta else None
            broker.enqueue(message.copy(queue_name=target, actor_name=target), delay=delay)
            moved += 1
        pipe = client.pipeline(transaction=True)
        pipe.lrem(key, 1, redis_id)
        pipe.hdel(f"{key}.msgs", redis_id)
        pipe.execute()
    return moved


def _target_queue(catalog: Catalog, stage: str, queue: str, message: dramatiq.Message) -> str:
    """The queue of the model that runs ``message``'s stage; the stage default's for a message too
    broken to route (its worker dead-letters it with the reason)."""
    priority = Priority.batch if is_batch_queue(queue) else Priority.interactive
    try:
        staged = StageMessage.parse(message.args[0] if message.args else None)
        model = catalog.route(staged.job, stage, staged.models) or catalog.defaults[stage]  # type: ignore[index]
    except InvalidJob:
        model = catalog.defaults[stage]  # type: ignore[index]
    if model not in catalog.models:
        model = catalog.defaults[stage]  # type: ignore[index]
    return STAGES[stage].actor_name(priority, model)
