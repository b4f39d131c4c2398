"""The compute budget at every door: one JobSpec check, refused with its numbers over HTTP, the intake and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import redis

from queue_config.jobs import MAX_COMPUTE_PIXEL_STEPS
from queue_config.settings import Settings
from tests.api.test_jobs_api import TOKEN, api_server, client_of
from tests.servers import REPO_ROOT
from workers.broker import build_broker
from workers.doors.intake import Intake
from workers.jobs.record import JobStatusStore

#: 1024x1024, 240 frames, 5 steps: 1,258,291,200 pixel-steps, over the budget; every field within its own limit.
OVER_BUDGET: dict[str, Any] = {
    "prompt": "a secret heron", "kind": "video", "width": 1024, "height": 1024, "num_frames": 240, "steps": 5,
}
COST, BUDGET = "1,258,291,200", f"{MAX_COMPUTE_PIXEL_STEPS:,}"


def own_settings(redis_url: str, data_dir: Path) -> Settings:
    return Settings(redis_url=redis_url, namespace=f"budget-{uuid.uuid4().hex[:8]}", data_dir=data_dir,
                    api_token=TOKEN)


def test_the_http_api_refuses_a_job_over_the_budget_with_422_and_the_numbers(redis_url: str, tmp_path: Path) -> None:
    with api_server(own_settings(redis_url, tmp_path)) as url, client_of(url) as client:
        response = client.post("/v1/jobs", json=OVER_BUDGET)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert COST in error["msg"] and BUDGET in error["msg"] and "secret" not in response.text


def test_the_intake_writes_a_rejected_receipt_with_the_numbers(redis_url: str, tmp_path: Path) -> None:
    settings = own_settings(redis_url, tmp_path)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    status = JobStatusStore(client, settings.namespace)
    intake = Intake(client, build_broker(settings), status, settings.namespace)

    receipt = intake.receive("1-0", {"job": json.dumps(OVER_BUDGET)})

    assert receipt.status == "rejected" and COST in receipt.reason and BUDGET in receipt.reason
    assert "secret" not in receipt.reason and status.get(receipt.job_id) is None


def test_the_cli_refuses_a_job_over_the_budget_with_the_numbers(redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "FRAMEQUEUE_DATA_DIR": str(tmp_path)}
    submitted = subprocess.run(
        [sys.executable, "-m", "workers.cli", "submit", OVER_BUDGET["prompt"], "--kind", "video", "--width", "1024",
         "--height", "1024", "--frames", "240", "--steps", "5"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )

    assert submitted.returncode == 2
    assert COST in submitted.stderr and BUDGET in submitted.stderr and "secret" not in submitted.stderr
