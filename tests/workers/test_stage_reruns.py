"""Stages through the actor shell and the status middleware on a stub broker: reruns, blocking."""

from __future__ import annotations

import uuid

import boto3
import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries
from PIL import Image

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from tests.pipelines.conftest import DEFAULT_SAFETY_THRESHOLD, build_unsafe_image
from workers.jobs.messages import StageMessage, stage_message
from workers.middleware import JobStatusMiddleware
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors
from workers.stages import STAGE_FUNCTIONS
from workers.stages.codecs import png_bytes


@pytest.fixture
def runtime(settings: Settings, tiny_profile) -> Runtime:  # type: ignore[no-untyped-def]
    return Runtime(settings.model_copy(update={"namespace": f"stage-test-{uuid.uuid4().hex[:8]}"}))


def image_job_at_safety_check(runtime: Runtime, image: Image.Image | None = None) -> StageMessage:
    """An image job whose key image (a plain blue square unless given) is stored, as the image stage would leave it."""
    spec = JobSpec(prompt="a lantern in the fog", kind=JobKind.image, width=64, height=64)
    runtime.status.create(spec, stage_plan(spec.kind))
    key_image = png_bytes(image or Image.new("RGB", (64, 64), (40, 90, 160)))
    stored = runtime.store.put_content(f"jobs/{spec.id}/image", key_image, "png", "image/png")
    return StageMessage(job=spec, refs={"image": stored.key})


def run_on_stub_broker(runtime: Runtime, stages: list[str], *messages: tuple[str, StageMessage]) -> StubBroker:
    """Declare ``stages`` on a stub broker with the status middleware, send ``messages`` each to the queue
    of the model that runs its stage, work them off."""
    broker = StubBroker()
    broker.add_middleware(JobStatusMiddleware(runtime.status), before=Retries)
    actors = declare_stage_actors(broker, {stage: STAGE_FUNCTIONS[stage] for stage in stages}, lambda: runtime,
                                  catalog=runtime.catalog)
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        for stage, message in messages:
            broker.enqueue(stage_message(stage, message, runtime.catalog))
            for queue_name in actors:
                broker.join(queue_name, fail_fast=True)
        worker.join()
    finally:
        worker.stop()
    return broker


def events_of(runtime: Runtime, job_id: str) -> list[str]:
    entries = runtime.status.client.xrange(runtime.status.events_key)
    return [fields["event"] for _, fields in entries if fields["job_id"] == job_id]


def test_rerunning_upload_writes_the_same_keys_and_one_manifest(runtime: Runtime) -> None:
    message = image_job_at_safety_check(runtime)

    first = STAGE_FUNCTIONS["upload"](runtime, message)
    second = STAGE_FUNCTIONS["upload"](runtime, message)

    assert first.artifacts == second.artifacts and first.record["manifest_key"] == second.record["manifest_key"]
    s3 = boto3.client("s3", endpoint_url=runtime.settings.s3_endpoint_url, region_name=runtime.settings.s3_region)
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=runtime.settings.s3_bucket)["Contents"]]
    assert [key for key in keys if key.startswith("manifests/") and message.job.id in key] == [
        first.record["manifest_key"]
    ]


def test_a_duplicate_message_after_success_changes_nothing_and_the_job_succeeds_once(runtime: Runtime) -> None:
    message = image_job_at_safety_check(runtime)

    run_on_stub_broker(runtime, ["upload"], ("upload", message), ("upload", message))

    record = runtime.status.get(message.job.id)
    assert record is not None and record.state == "succeeded" and record.attempts["upload"] == 1
    assert record.artifacts["result"]["key"] == record.result_key and "upload" in record.timings_s
    assert events_of(runtime, message.job.id).count("succeeded") == 1


def test_the_classifier_blocks_an_unsafe_image_at_the_default_threshold_and_it_uploads_nothing(
    runtime: Runtime,
) -> None:
    assert runtime.settings.safety_threshold == DEFAULT_SAFETY_THRESHOLD
    message = image_job_at_safety_check(runtime, build_unsafe_image())

    run_on_stub_broker(runtime, ["safety_check", "upload"], ("safety_check", message))

    record = runtime.status.get(message.job.id)
    assert record is not None and record.state == "blocked" and record.safety_score is not None
    assert record.safety_score >= DEFAULT_SAFETY_THRESHOLD
    assert record.error.startswith("blocked by the image check: sexual (score")
    assert (record.blocked_check, record.blocked_category) == ("image", "sexual")
    assert "upload" not in record.attempts and not record.result_key


def test_a_safe_image_passes_on_to_upload(runtime: Runtime) -> None:
    message = image_job_at_safety_check(runtime)

    run_on_stub_broker(runtime, ["safety_check", "upload"], ("safety_check", message))

    record = runtime.status.get(message.job.id)
    assert record is not None and record.state == "succeeded" and record.safety_score is not None
    assert record.safety_score < runtime.settings.safety_threshold
    assert record.attempts == {"safety_check": 1, "upload": 1}


def test_messages_of_a_cancelled_job_are_skipped(runtime: Runtime) -> None:
    message = image_job_at_safety_check(runtime)
    runtime.status.cancel(message.job.id)

    run_on_stub_broker(runtime, ["safety_check", "upload"], ("safety_check", message))

    record = runtime.status.get(message.job.id)
    assert record is not None and record.state == "cancelled" and record.attempts == {}
    assert record.safety_score is None and not record.result_key
