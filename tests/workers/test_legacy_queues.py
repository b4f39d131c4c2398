"""Messages waiting on a model stage's queue from before the catalog move to their model's queue."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dramatiq
import pytest

from queue_config.catalog import catalog_of
from queue_config.jobs import JobKind, JobSpec, Priority
from queue_config.settings import Settings
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.queues import IMAGE_QUEUE
from workers import ops
from workers.jobs.legacy_queues import move_legacy_messages
from workers.jobs.messages import StageMessage
from workers.jobs.reconciler import Reconciler


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    yield from cleaned_namespace(settings, "legacy")


def old_message(ns: Namespace, queue: str, spec: JobSpec, *, delay_ms: int | None = None) -> dramatiq.Message:
    """A stage message as a worker of before the catalog left it: on the stage's one queue."""
    payload = StageMessage(job=spec, refs={"prompt": f"jobs/{spec.id}/prompt.txt"}).model_dump(mode="json")
    payload["job"].pop("models"), payload.pop("models")
    message = dramatiq.Message(queue_name=queue, actor_name=queue, args=(payload,), kwargs={}, options={})
    return ns.broker.enqueue(message, delay=delay_ms)


def test_waiting_and_delayed_old_messages_move_to_their_models_queues_with_their_ids_and_times(
    ns: Namespace,
) -> None:
    catalog = catalog_of(ns.settings)
    plain = JobSpec(prompt="a heron", kind=JobKind.image, schema_version=1)
    chosen = JobSpec(prompt="a crane", kind=JobKind.video, frames_backend="img2img", priority=Priority.batch,
                     schema_version=1)
    waiting = old_message(ns, "image", plain)
    delayed = old_message(ns, "frames_batch", chosen, delay_ms=60_000)
    broken = ns.broker.enqueue(dramatiq.Message(queue_name="prompt_enhance", actor_name="prompt_enhance",
                                                args=("garbage",), kwargs={}, options={}))

    moved = move_legacy_messages(ns.broker, catalog)

    assert moved == 3
    [now_ready] = ops.ready_messages(ns.status, IMAGE_QUEUE)
    assert now_ready["message_id"] == waiting.message_id and now_ready["args"][0]["job"]["id"] == plain.id
    [now_delayed], _ = ops.delayed_messages(ns.status, "frames_batch.img2img")
    assert now_delayed.message_id == delayed.message_id
    assert abs(now_delayed.due_at - delayed.options["eta"] / 1000) < 5
    assert [m["message_id"] for m in ops.ready_messages(ns.status, "prompt_enhance.tiny-text")] == [broken.message_id]
    for old in ("image", "frames_batch", "frames_batch.DQ", "prompt_enhance"):
        assert ns.status.client.llen(f"{ns.settings.namespace}:{old}") == 0, old
        assert ns.status.client.hlen(f"{ns.settings.namespace}:{old}.msgs") == 0, old
    assert ns.status.client.hget(f"{ns.settings.namespace}:inflight", plain.id).startswith(f"{IMAGE_QUEUE}\t")
    assert move_legacy_messages(ns.broker, catalog) == 0


def test_each_reconciler_pass_moves_them(ns: Namespace) -> None:
    spec = JobSpec(prompt="a heron", kind=JobKind.image, schema_version=1)
    old_message(ns, "prompt_enhance", spec)

    Reconciler(ns.status, ns.broker, stale_after_s=time.time()).run_once()

    assert [m["args"][0]["job"]["id"] for m in ops.ready_messages(ns.status, "prompt_enhance.tiny-text")] == [spec.id]
