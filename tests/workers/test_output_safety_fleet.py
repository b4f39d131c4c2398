"""The image check on real worker processes: a key image the classifier blocks ends the job in the image stage.

The worker's image stage is routed to a stand-in for an OpenAI-compatible image API that answers
every request with the unsafe image built in tests/pipelines/conftest.py; the worker scores it with
the real OpenNSFW classifier, as in production.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.pipelines.conftest import DEFAULT_SAFETY_THRESHOLD, build_unsafe_image
from tests.workers.remote_stages import remote_fleet, remote_toml
from tests.workers.test_job_flow import wait_until_finished
from workers import ops
from workers.jobs.submit import submit_job
from workers.stages.codecs import png_bytes


class UnsafeImageAPI(ThreadingHTTPServer):
    """Answers ``POST /v1/images/generations`` with one PNG, whatever was asked; counts the requests."""

    def __init__(self, png: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.png, self.requests = png, 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: UnsafeImageAPI

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests += 1
        body = json.dumps({"data": [{"b64_json": base64.b64encode(self.server.png).decode()}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def image_api() -> Iterator[UnsafeImageAPI]:
    server = UnsafeImageAPI(png_bytes(build_unsafe_image()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(10)


def test_a_video_job_whose_key_image_is_blocked_makes_no_frames_video_or_upload(
    settings: Settings, tiny_profile: Any, image_api: UnsafeImageAPI, tmp_path: Path, artifacts_dir: Path
) -> None:
    toml = remote_toml({"image": ("openai", image_api.base_url)})
    with remote_fleet(settings, tmp_path, artifacts_dir, "framequeue-output-safety", toml, ["fake-key"]) as fleet:
        spec = JobSpec(prompt="a lantern in the fog", kind=JobKind.video, width=224, height=224, num_frames=6,
                       fps=6, enhance_prompt=False)
        submit_job(fleet.broker, fleet.status, spec, catalog=fleet.catalog)

        record = wait_until_finished(fleet.status, spec.id)

    assert image_api.requests >= 1
    assert record.state == "blocked" and record.stage == "image", record.error
    assert (record.blocked_check, record.blocked_category) == ("image", "sexual")
    assert record.blocked_score is not None and record.blocked_score >= DEFAULT_SAFETY_THRESHOLD
    assert set(record.attempts) == {"prompt_enhance", "image"} and set(record.artifacts) == {"prompt"}
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix=f"jobs/{spec.id}/")
    stored = {item["Key"] for page in pages for item in page.get("Contents", [])}
    assert stored == {record.artifacts["prompt"]["key"]}
    assert not record.result_key and not record.manifest_key
    assert ops.block_counts(fleet.status) == [ops.BlockCount("image", "sexual", 1)]
