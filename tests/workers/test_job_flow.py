"""Jobs from submission to result, through real worker processes, Redis and an S3 server."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.request
from pathlib import Path

import boto3
import cv2
import imageio_ffmpeg
import pytest
from PIL import Image

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.servers import wait_for
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.submit import submit_job

pytestmark = pytest.mark.usefixtures("workers")

#: Generous: the first job of a session loads every tiny model cold.
JOB_TIMEOUT_S = 180


def wait_until_finished(status: JobStatusStore, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> JobRecord:
    def finished() -> JobRecord | None:
        record = status.get(job_id)
        return record if record is not None and record.finished else None

    return wait_for(finished, timeout_s, f"job {job_id} to finish", interval_s=0.2)


def s3_objects(settings: Settings) -> dict[str, bytes]:
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    listing = client.list_objects_v2(Bucket=settings.s3_bucket).get("Contents", [])
    bucket = settings.s3_bucket
    return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listing}


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_a_video_job_ends_with_a_presigned_url_to_an_h264_mp4(broker, status, settings, artifacts_dir: Path) -> None:
    spec = JobSpec(
        prompt="a lighthouse on a cliff at dusk", kind=JobKind.video, width=96, height=64, num_frames=12, fps=6, seed=7
    )
    submit_job(broker, status, spec)

    record = wait_until_finished(status, spec.id)

    assert record.state == "succeeded", record.error
    assert record.result_url.startswith(settings.s3_endpoint_url) and "Signature" in record.result_url
    video = fetch(record.result_url)
    path = artifacts_dir / "video-job.mp4"
    path.write_bytes(video)
    frame_count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frame_count == 12
    capture = cv2.VideoCapture(str(path))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    capture.release()
    assert fourcc in ("avc1", "h264") and size == (96, 64)
    assert set(record.timings_s) == set(record.stages)
    assert record.attempts == {stage: 1 for stage in record.stages}
    assert record.stages == ["prompt_enhance", "image", "frames", "video", "safety_check", "upload"]
    assert record.artifacts["result"]["sha256"] == hashlib.sha256(video).hexdigest()
    manifest = json.loads(s3_objects(settings)[record.manifest_key])
    assert manifest["job_id"] == spec.id and manifest["result"]["key"] == record.result_key


def test_an_image_job_ends_with_a_png_of_the_requested_size(broker, status) -> None:
    spec = JobSpec(prompt="a red fox in fresh snow", kind=JobKind.image, width=128, height=64, seed=3)
    submit_job(broker, status, spec)

    record = wait_until_finished(status, spec.id)

    assert record.state == "succeeded", record.error
    image = Image.open(io.BytesIO(fetch(record.result_url)))
    assert image.format == "PNG" and image.size == (128, 64)
    assert "frames" not in record.timings_s and record.safety_score is not None


def test_an_unsafe_prompt_is_blocked_and_uploads_nothing(broker, status, settings) -> None:
    spec = JobSpec(prompt="a nude figure study", kind=JobKind.image)
    submission = submit_job(broker, status, spec)

    record = status.get(spec.id)

    assert submission.state == "blocked" and record is not None and record.state == "blocked"
    assert record.error.startswith("blocked by the prompt check: sexual")
    assert (record.blocked_check, record.blocked_category) == ("prompt", "sexual")
    assert not [key for key in s3_objects(settings) if spec.id in key]


def test_submitting_the_same_job_id_twice_runs_it_once(broker, status) -> None:
    spec = JobSpec(prompt="a paper boat on a puddle", kind=JobKind.image, width=64, height=64)
    first, second = submit_job(broker, status, spec), submit_job(broker, status, spec)

    record = wait_until_finished(status, spec.id)

    assert first.created and not second.created
    assert record.state == "succeeded" and record.attempts["image"] == 1


def test_a_video_job_can_grow_its_frames_by_img2img(broker, status, artifacts_dir: Path) -> None:
    spec = JobSpec(prompt="a koi pond in autumn", kind=JobKind.video, width=64, height=64, num_frames=8, fps=8,
                   frames_backend="img2img", steps=2)
    submit_job(broker, status, spec)

    record = wait_until_finished(status, spec.id)

    assert record.state == "succeeded", record.error
    assert record.models["frames"].startswith("img2img@")  # the job's frames_backend chose the frames model
    path = artifacts_dir / "img2img-job.mp4"
    path.write_bytes(fetch(record.result_url))
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 8
