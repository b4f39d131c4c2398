"""The output checks through the actor shell and the status middleware on a stub broker.

Real Redis, a real S3 server and the real OpenNSFW classifier; the image or frames model is
swapped for one that hands back the unsafe image built in tests/pipelines/conftest.py, since
the tiny models never render anything the classifier scores high.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import numpy as np
import pytest
from PIL import Image

from pipelines import FramesOutput, ImageOutput
from queue_config.jobs import JobKind, JobSpec
from queue_config.safety_policy import Check
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from tests.pipelines.conftest import DEFAULT_SAFETY_THRESHOLD, build_unsafe_image, draw_landscape
from tests.workers.test_stage_reruns import run_on_stub_broker
from workers.jobs.messages import StageMessage
from workers.runtime import Runtime
from workers.stages.screening import merged_flags

#: The unsafe image's own size, so that nothing resizes it on the way to the classifier.
SIDE_PX = 224


class RiggedRuntime(Runtime):
    """A worker runtime whose image model renders ``key_image`` and whose frames all show ``frames_image``."""

    def __init__(self, settings: Settings, key_image: Image.Image, frames_image: Image.Image | None = None) -> None:
        super().__init__(settings)
        self.key_image, self.frames_image = key_image, frames_image

    def model(self, model_id: str) -> Any:
        stage = self.catalog.models[model_id].stage
        if stage == "image":
            return lambda prompts, **_: ImageOutput(images=[self.key_image.copy() for _ in prompts])
        if stage == "frames" and self.frames_image is not None:
            frame = np.asarray(self.frames_image.convert("RGB"))
            return lambda _, *, num_frames, fps, **__: FramesOutput(frames=np.stack([frame] * num_frames), fps=fps)
        return super().model(model_id)


def rigged(settings: Settings, key_image: Image.Image, frames_image: Image.Image | None = None,
           **changes: Any) -> RiggedRuntime:
    namespace = f"safety-test-{uuid.uuid4().hex[:8]}"
    return RiggedRuntime(settings.model_copy(update={"namespace": namespace, **changes}), key_image, frames_image)


def run_job(runtime: Runtime, kind: JobKind = JobKind.video) -> str:
    """Submit a job of ``kind`` to every stage on a stub broker and work it off; its id."""
    spec = JobSpec(prompt="a lantern in the fog", kind=kind, width=SIDE_PX, height=SIDE_PX, num_frames=6, fps=6,
                   enhance_prompt=False)
    runtime.status.create(spec, stage_plan(spec.kind))
    run_on_stub_broker(runtime, list(stage_plan(JobKind.video)), ("prompt_enhance", StageMessage(job=spec)))
    return spec.id


def stored_keys(runtime: Runtime) -> set[str]:
    """Every key in the bucket (the runtime's store makes the bucket if it is not there yet)."""
    assert runtime.store is not None
    settings = runtime.settings
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def block_counts(runtime: Runtime) -> dict[str, str]:
    return runtime.status.client.hgetall(runtime.status.safety_blocks_key)


@pytest.fixture(scope="module")
def unsafe() -> Image.Image:
    image = build_unsafe_image()
    assert image.size == (SIDE_PX, SIDE_PX)
    return image


@pytest.fixture(scope="module")
def safe() -> Image.Image:
    return draw_landscape(SIDE_PX, SIDE_PX)


def test_a_key_image_blocked_at_the_image_stage_leaves_no_frames_video_or_upload(
    settings: Settings, tiny_profile: Any, unsafe: Image.Image
) -> None:
    runtime = rigged(settings, unsafe)
    before = stored_keys(runtime)

    job_id = run_job(runtime)

    record = runtime.status.get(job_id)
    assert record is not None and record.state == "blocked" and record.stage == "image"
    assert (record.blocked_check, record.blocked_category) == ("image", "sexual")
    assert record.blocked_score is not None and record.blocked_score >= DEFAULT_SAFETY_THRESHOLD
    assert record.safety_scores["image"] == record.blocked_score
    assert record.error.startswith("blocked by the image check: sexual (score")
    assert record.attempts == {"prompt_enhance": 1, "image": 1} and set(record.artifacts) == {"prompt"}
    assert not record.result_key and not record.manifest_key
    added = stored_keys(runtime) - before
    assert added == {record.artifacts["prompt"]["key"]}, added
    assert block_counts(runtime) == {"image:sexual": "1"}
    assert runtime.status.client.zrange(runtime.status.safety_blocked_key, 0, -1) == [job_id]


def test_a_flag_only_policy_records_the_flag_and_the_job_publishes(
    settings: Settings, tiny_profile: Any, unsafe: Image.Image
) -> None:
    runtime = rigged(settings, unsafe, safety_block_categories=frozenset(),
                     safety_flag_categories=frozenset({"sexual"}))

    job_id = run_job(runtime, JobKind.image)

    record = runtime.status.get(job_id)
    assert record is not None and record.state == "succeeded", record.error
    assert record.result_key and record.manifest_key and not record.blocked_check
    flags = record.safety_flags.split(",")
    assert len(flags) == 1 and flags[0].startswith("image:sexual:"), flags
    assert float(flags[0].rsplit(":", 1)[1]) >= DEFAULT_SAFETY_THRESHOLD
    assert block_counts(runtime) == {}


def test_unsafe_frames_block_the_job_after_the_video_and_nothing_is_uploaded(
    settings: Settings, tiny_profile: Any, unsafe: Image.Image, safe: Image.Image
) -> None:
    runtime = rigged(settings, safe, frames_image=unsafe)
    before = stored_keys(runtime)

    job_id = run_job(runtime)

    record = runtime.status.get(job_id)
    assert record is not None and record.state == "blocked" and record.stage == "safety_check"
    assert (record.blocked_check, record.blocked_category) == ("frames", "sexual")
    assert record.safety_scores["image"] < DEFAULT_SAFETY_THRESHOLD <= record.safety_scores["frames"]
    assert "video" in record.artifacts and "upload" not in record.attempts
    assert not record.result_key and not record.manifest_key
    added = stored_keys(runtime) - before
    assert not [key for key in added if key.startswith(("results/", "manifests/"))], added
    assert block_counts(runtime) == {"frames:sexual": "1"}


def test_a_policy_that_neither_blocks_nor_flags_the_category_lets_the_job_publish_unmarked(
    settings: Settings, tiny_profile: Any, unsafe: Image.Image
) -> None:
    runtime = rigged(settings, unsafe, safety_block_categories=frozenset({"violence"}))

    job_id = run_job(runtime, JobKind.image)

    record = runtime.status.get(job_id)
    assert record is not None and record.state == "succeeded" and record.result_key
    assert not record.safety_flags and record.safety_scores["image"] >= DEFAULT_SAFETY_THRESHOLD


def test_a_check_s_flags_replace_its_own_earlier_ones_and_keep_the_other_checks() -> None:
    recorded = "prompt:hate:0.500,enhanced_prompt:violence:0.700,image:sexual:0.850"

    assert merged_flags(recorded, Check.image, "image:sexual:0.900") == (
        "prompt:hate:0.500,enhanced_prompt:violence:0.700,image:sexual:0.900"
    )
    assert merged_flags(recorded, Check.prompt, "prompt:hate:0.600") == (
        "enhanced_prompt:violence:0.700,image:sexual:0.850,prompt:hate:0.600"
    )
    assert merged_flags("", Check.frames, "frames:sexual:0.810") == "frames:sexual:0.810"
