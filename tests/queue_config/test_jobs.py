from __future__ import annotations

import pytest
from pydantic import ValidationError

from queue_config.jobs import MAX_COMPUTE_PIXEL_STEPS, MAX_PROMPT_CHARS, JobKind, JobSpec
from queue_config.stages import stage_plan


def test_a_minimal_job_gets_an_id_and_safe_defaults() -> None:
    spec = JobSpec(prompt="a cat")
    assert len(spec.id) == 32 and spec.kind is JobKind.image and spec.schema_version == 2 and spec.models == {}


def test_a_version_1_job_is_still_accepted_and_names_its_frames_by_frames_backend() -> None:
    spec = JobSpec(prompt="a cat", kind=JobKind.video, schema_version=1, frames_backend="img2img")
    assert spec.schema_version == 1 and spec.frames_backend == "img2img" and spec.models == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": ""},
        {"prompt": "x" * (MAX_PROMPT_CHARS + 1)},
        {"prompt": "a cat", "width": 100},
        {"prompt": "a cat", "height": 2048},
        {"prompt": "a cat", "width": 32},
        {"prompt": "a cat", "steps": 0},
        {"prompt": "a cat", "num_frames": 10_000},
        {"prompt": "a cat", "fps": 0},
        {"prompt": "a cat", "schema_version": 3},
        {"prompt": "a cat", "schema_version": 1, "models": {"image": "tiny-sd"}},
        {"prompt": "a cat", "models": {"upload": "tiny-sd"}},
        {"prompt": "a cat", "models": {"image": "Tiny SD"}},
        {"prompt": "a cat", "kind": "video", "models": {"frames": "camera"}, "frames_backend": "img2img"},
        {"prompt": "a cat", "kind": "audio"},
        {"prompt": "a cat", "id": "../etc/passwd"},
        {"prompt": "a cat", "unexpected": 1},
    ],
)
def test_jobs_outside_the_limits_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JobSpec(**fields)  # type: ignore[arg-type]


def test_jobs_are_immutable() -> None:
    with pytest.raises(ValidationError):
        JobSpec(prompt="a cat").prompt = "a dog"  # type: ignore[misc]


def test_image_jobs_skip_frames_and_video() -> None:
    assert stage_plan(JobKind.image) == ("prompt_enhance", "image", "safety_check", "upload")
    assert stage_plan(JobKind.video)[2:4] == ("frames", "video")


@pytest.mark.parametrize(
    ("fields", "cost"),
    [
        ({"kind": "video", "width": 1024, "height": 1024, "num_frames": 240, "steps": 5}, "1,258,291,200"),
        ({"kind": "video", "width": 1024, "height": 1024, "num_frames": 240, "steps": 50}, "12,582,912,000"),
        ({"kind": "video", "width": 512, "height": 512, "num_frames": 200, "steps": 25}, "1,310,720,000"),
    ],
)
def test_a_job_over_the_compute_budget_is_refused_with_its_cost_and_the_budget(
    fields: dict[str, object], cost: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        JobSpec(prompt="a secret prompt", **fields)  # type: ignore[arg-type]

    [error] = refused.value.errors(include_input=False)
    assert cost in error["msg"] and f"{MAX_COMPUTE_PIXEL_STEPS:,}" in error["msg"]
    assert "secret" not in error["msg"]


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "video", "width": 1024, "height": 1024, "num_frames": 240},  # the largest video at the default steps
        {"kind": "video", "width": 1024, "height": 1024, "num_frames": 240, "steps": 1, "fps": 24},
        {"kind": "image", "width": 1024, "height": 1024, "steps": 50, "num_frames": 240},  # an image has one frame
        {"kind": "video", "width": 512, "height": 512, "num_frames": 120, "steps": 16},
    ],
)
def test_large_sensible_jobs_are_within_the_compute_budget(fields: dict[str, object]) -> None:
    spec = JobSpec(prompt="a cat", **fields)  # type: ignore[arg-type]
    assert spec.compute_pixel_steps <= MAX_COMPUTE_PIXEL_STEPS
