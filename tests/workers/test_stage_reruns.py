"""Stages through the actor shell, in-process: reruns, blocking, and what gets sent on."""

from __future__ import annotations

import uuid

import boto3
import pytest
from dramatiq.brokers.stub import StubBroker

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from workers.messages import StageMessage
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors
from workers.stages import STAGE_FUNCTIONS
from workers.stages.codecs import png_bytes


@pytest.fixture
def runtime(settings: Settings, tiny_profile) -> Runtime:  # type: ignore[no-untyped-def]
    return Runtime(settings.model_copy(update={"namespace": f"stage-test-{uuid.uuid4().hex[:8]}"}))


def image_job_at_safety_check(runtime: Runtime) -> StageMessage:
    """An image job whose key image is stored, as the image stage would leave it."""
    spec = JobSpec(prompt="a lantern in the fog", kind=JobKind.image, width=64, height=64)
    runtime.status.create(spec, stage_plan(spec.kind))
    from PIL import Image

    stored = runtime.store.put_content(f"jobs/{spec.id}/image", png_bytes(Image.new("RGB", (64, 64), (40, 90, 160))),
                                       "png", "image/png")
    return StageMessage(job=spec, refs={"image": stored.key})


def events_of(runtime: Runtime, job_id: str) -> list[str]:
    entries = runtime.status.client.xrange(runtime.status.events_key)
    return [fields["event"] for _, fields in entries if fields["job_id"] == job_id]


def test_running_upload_twice_writes_the_same_keys_one_manifest_and_succeeds_once(runtime: Runtime) -> None:
    message = image_job_at_safety_check(runtime)
    upload = declare_stage_actors(StubBroker(), {"upload": STAGE_FUNCTIONS["upload"]}, lambda: runtime)["upload"]

    upload.fn(message.model_dump(mode="json"))
    first = runtime.status.get(message.job.id)
    upload.fn(message.model_dump(mode="json"))
    second = runtime.status.get(message.job.id)

    assert first is not None and second is not None and first.state == second.state == "succeeded"
    assert first.result_key == second.result_key and first.manifest_key == second.manifest_key
    s3 = boto3.client("s3", endpoint_url=runtime.settings.s3_endpoint_url, region_name=runtime.settings.s3_region)
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=runtime.settings.s3_bucket)["Contents"]]
    assert [key for key in keys if message.job.id in key and key.startswith("manifests/")] == [first.manifest_key]
    assert events_of(runtime, message.job.id).count("succeeded") == 1


def test_the_classifier_blocks_a_job_at_the_threshold_and_nothing_is_sent_on(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.model_copy(update={"safety_threshold": 0.0})
    message = image_job_at_safety_check(runtime)
    broker = StubBroker()
    actors = declare_stage_actors(broker, {"safety_check": STAGE_FUNCTIONS["safety_check"]}, lambda: runtime)

    actors["safety_check"].fn(message.model_dump(mode="json"))

    record = runtime.status.get(message.job.id)
    assert record is not None and record.state == "blocked" and record.safety_score is not None
    assert record.error.startswith("blocked by safety check: NSFW score")
    assert "upload" not in broker.queues


def test_a_safe_image_passes_on_to_upload(runtime: Runtime) -> None:
    message = image_job_at_safety_check(runtime)
    broker = StubBroker()
    actors = declare_stage_actors(broker, {"safety_check": STAGE_FUNCTIONS["safety_check"]}, lambda: runtime)

    actors["safety_check"].fn(message.model_dump(mode="json"))

    record = runtime.status.get(message.job.id)
    assert record is not None and record.state == "queued" and record.safety_score is not None
    assert record.safety_score < runtime.settings.safety_threshold
    assert broker.queues["upload"].qsize() == 1
