"""At-least-once delivery: bad messages are dead-lettered with a reason, dead workers lose nothing."""

from __future__ import annotations

import json
from pathlib import Path

import dramatiq
import pytest
import redis

from queue_config.catalog import catalog_of
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.queues import IMAGE_QUEUE, PROMPT_QUEUE
from tests.servers import WorkerProcess, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.broker import build_broker
from workers.jobs.messages import StageMessage
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job


def dead_lettered_ids(settings: Settings, queue_name: str) -> set[str]:
    client = redis.Redis.from_url(settings.redis_url)
    stored = client.hvals(f"{settings.namespace}:{queue_name}.XQ.msgs")
    return {json.loads(data)["message_id"] for data in stored}


@pytest.mark.usefixtures("workers")
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"job": {"prompt": "a cat", "width": 100}}, "job.width: Value error, must be a multiple of 8"),
        ({"job": {"prompt": "a cat", "schema_version": 9}}, "job.schema_version: Input should be 1 or 2"),
        ('{"job": {"prompt": ', "Invalid JSON"),
        ({"job": {"prompt": "a cat", "steps": "many"}}, "job.steps: Input should be a valid integer"),
    ],
    ids=["size-not-multiple-of-8", "unknown-schema-version", "malformed-json", "wrong-type"],
)
def test_an_invalid_message_is_dead_lettered_with_its_reason(broker, status, settings, payload, expected) -> None:
    message = dramatiq.Message(queue_name=IMAGE_QUEUE, actor_name=IMAGE_QUEUE, args=(payload,), kwargs={}, options={})
    broker.declare_queue(IMAGE_QUEUE)
    broker.enqueue(message)

    dead_letter = wait_for(lambda: status.dead_letter_reason(message.message_id), 60, "the dead-letter reason")

    # The entry names the stage, not the model's actor: the failures metric counts by stage.
    assert dead_letter["actor"] == "image" and "InvalidJob: invalid job" in dead_letter["reason"]
    assert expected in dead_letter["reason"]
    assert message.message_id in dead_lettered_ids(settings, IMAGE_QUEUE)


@pytest.mark.usefixtures("workers")
def test_the_worker_keeps_serving_after_invalid_messages(broker, status) -> None:
    broker.enqueue(dramatiq.Message(queue_name=PROMPT_QUEUE, actor_name=PROMPT_QUEUE, args=("garbage",),
                                    kwargs={}, options={}))
    spec = JobSpec(prompt="a quiet harbour", kind=JobKind.image, width=64, height=64)
    submit_job(broker, status, spec)

    assert wait_until_finished(status, spec.id).state == "succeeded"


def test_a_worker_killed_mid_stage_does_not_lose_the_job(settings: Settings, tiny_profile, artifacts_dir: Path) -> None:
    isolated = settings.model_copy(update={"namespace": "framequeue-kill"})
    env = settings_env(isolated)
    status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), isolated.namespace)
    spec = JobSpec(prompt="a windmill in a storm", kind=JobKind.video, width=64, height=64, num_frames=8)
    first = WorkerProcess(env, artifacts_dir / "worker-killed.log", "--threads", "1")
    submit_job(build_broker(isolated), status, spec)

    def running_first_stage() -> bool:
        record = status.get(spec.id)
        return record is not None and record.state == "running" and record.stage == "prompt_enhance"

    wait_for(running_first_stage, 120, "the first worker to start the job", interval_s=0.02)
    first.kill()
    assert status.get(spec.id).state == "running"  # type: ignore[union-attr]

    second = WorkerProcess(env, artifacts_dir / "worker-successor.log", "--threads", "1")
    try:
        record = wait_until_finished(status, spec.id)
    finally:
        second.stop()

    assert record.state == "succeeded", record.error
    assert record.attempts["prompt_enhance"] == 2


@pytest.mark.usefixtures("workers")
def test_a_stage_whose_input_is_late_is_retried_with_backoff_until_it_appears(broker, status, settings) -> None:
    from storage import open_store
    from workers.jobs.messages import enqueue_stage

    spec = JobSpec(prompt="a kite over dunes", kind=JobKind.image, width=64, height=64)
    status.create(spec, ("prompt_enhance", "image", "safety_check", "upload"))
    late_key = f"jobs/{spec.id}/prompt/late.txt"
    enqueue_stage(broker, "image", StageMessage(job=spec, refs={"prompt": late_key}), catalog_of(settings))

    def retrying() -> bool:
        events = [fields for _, fields in status.client.xrange(status.events_key) if fields["job_id"] == spec.id]
        return any(event["event"] == "retrying" and "StageInputMissing" in event.get("error", "") for event in events)

    wait_for(retrying, 60, "the image stage to fail for want of its input")
    open_store(settings).put_bytes(late_key, b"a kite over dunes", "text/plain")
    record = wait_until_finished(status, spec.id)

    assert record.state == "succeeded", record.error
    assert record.attempts["image"] >= 2
