from __future__ import annotations

import pytest
from pydantic import ValidationError

from queue_config.jobs import MAX_PROMPT_CHARS, JobKind, JobSpec
from queue_config.stages import stage_plan


def test_a_minimal_job_gets_an_id_and_safe_defaults() -> None:
    spec = JobSpec(prompt="a cat")
    assert len(spec.id) == 32 and spec.kind is JobKind.image and spec.schema_version == 1


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
        {"prompt": "a cat", "schema_version": 2},
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
