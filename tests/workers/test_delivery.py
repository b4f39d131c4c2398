"""At-least-once delivery: bad messages are dead-lettered with a reason, dead workers lose nothing."""

from __future__ import annotations

import json
from pathlib import Path

import dramatiq
import pytest
import redis

from queue_config.broker import build_broker
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.servers import WorkerProcess, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.job_status import JobStatusStore
from workers.submit import submit_job


def dead_lettered_ids(settings: Settings, queue_name: str) -> set[str]:
    client = redis.Redis.from_url(settings.redis_url)
    stored = client.hvals(f"{settings.namespace}:{queue_name}.XQ.msgs")
    return {json.loads(data)["message_id"] for data in stored}


@pytest.mark.usefixtures("workers")
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"job": {"prompt": "a cat", "width": 100}}, "job.width: Value error, must be a multiple of 8"),
        ({"job": {"prompt": "a cat", "schema_version": 9}}, "job.schema_version: Input should be 1"),
        ('{"job": {"prompt": ', "Invalid JSON"),
        ({"job": {"prompt": "a cat", "steps": "many"}}, "job.steps: Input should be a valid integer"),
    ],
    ids=["size-not-multiple-of-8", "unknown-schema-version", "malformed-json", "wrong-type"],
)
def test_an_invalid_message_is_dead_lettered_with_its_reason(broker, status, settings, payload, expected) -> None:
    message = dramatiq.Message(queue_name="image", actor_name="image", args=(payload,), kwargs={}, options={})
    broker.declare_queue("image")
    broker.enqueue(message)

    dead_letter = wait_for(lambda: status.dead_letter_reason(message.message_id), 60, "the dead-letter reason")

    assert dead_letter["actor"] == "image" and "InvalidJob: invalid job" in dead_letter["reason"]
    assert expected in dead_letter["reason"]
    assert message.message_id in dead_lettered_ids(settings, "image")


@pytest.mark.usefixtures("workers")
def test_the_worker_keeps_serving_after_invalid_messages(broker, status) -> None:
    broker.enqueue(dramatiq.Message(queue_name="prompt_enhance", actor_name="prompt_enhance", args=("garbage",),
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
