"""A video job whose frames come from the image-to-video model, through real workers to a decodable H.264 file."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import imageio_ffmpeg
import pytest

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.workers.test_job_flow import s3_objects, wait_until_finished
from workers.jobs.submit import submit_job

pytestmark = pytest.mark.usefixtures("workers")


def test_a_job_choosing_the_image_to_video_model_ends_with_its_frames_in_an_h264_mp4(
    broker, status, settings: Settings, artifacts_dir: Path
) -> None:
    spec = JobSpec(prompt="a lighthouse on a cliff at dusk", kind=JobKind.video, width=64, height=64, num_frames=8,
                   fps=6, steps=2, seed=11, models={"frames": "tiny-svd"})
    submit_job(broker, status, spec)

    record = wait_until_finished(status, spec.id)

    assert record.state == "succeeded", record.error
    assert record.models["frames"].startswith("tiny-svd@sha256:")
    assert record.models["image"].startswith("tiny-sd@sha256:")
    with urllib.request.urlopen(record.result_url, timeout=30) as response:
        video = response.read()
    path = artifacts_dir / "image-to-video-job.mp4"
    path.write_bytes(video)
    frame_count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frame_count == 8
    manifest = json.loads(s3_objects(settings)[record.manifest_key])
    assert manifest["models"] == record.models and manifest["spec"]["models"] == {"frames": "tiny-svd"}
