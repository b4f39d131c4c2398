"""Overnight batches: files in, interactive work first, the run window, retries, the manifest."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
import redis

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from storage import open_store
from tests.conftest import settings_env
from tests.queues import PROMPT_BATCH_QUEUE, PROMPT_QUEUE
from tests.servers import REPO_ROOT, WorkerProcess, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.batches import batch_progress, cancel_batch, retry_failed, submit_lines
from workers.batches.files import parse_batch
from workers.batches.window import BatchWindow
from workers.broker import build_broker
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job

#: Time left, once a fresh worker has served its first job, before its batch window opens: enough to
#: submit a batch job and see it held.
WINDOW_MARGIN_S = 10


def image_lines(count: int, **fields: object) -> str:
    return "\n".join(json.dumps({"prompt": f"a paper lantern {n}", "kind": "image", "width": 64, "height": 64,
                                 "enhance_prompt": False, **fields}) for n in range(count)) + "\n"


def idle_namespace(settings: Settings) -> tuple[JobStatusStore, object, Settings]:
    """A namespace no worker serves: what is submitted stays queued."""
    quiet = settings.model_copy(update={"namespace": f"batch-idle-{uuid.uuid4().hex[:8]}"})
    status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), quiet.namespace)
    return status, build_broker(quiet), quiet


def queued_messages(status: JobStatusStore, queue: str) -> int:
    return int(status.client.llen(f"{status.namespace}:{queue}"))


@pytest.mark.usefixtures("workers")
def test_a_file_with_good_and_bad_lines_runs_the_good_ones_to_a_manifest(settings, status, tmp_path: Path) -> None:
    path = tmp_path / "overnight.jsonl"
    path.write_text(image_lines(3) + '{"prompt": "a fox", "width": 100}\n')

    command = [sys.executable, "-m", "workers.cli", "batch", "submit", str(path)]
    done = subprocess.run(command, env=settings_env(settings), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)

    assert done.returncode == 0, done.stderr
    assert f"{path}:4: invalid job: width: Value error, must be a multiple of 8" in done.stderr
    batch_id = json.loads(done.stdout.strip().splitlines()[-1])["batch_id"]
    progress = wait_for(lambda: (p := batch_progress(status, batch_id)) and p["completed"] and p, 180, "the batch")
    assert progress["counts"]["succeeded"] == 3 and progress["total"] == 3
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    manifest = s3.get_object(Bucket=settings.s3_bucket, Key=progress["manifest_key"])["Body"].read().decode()
    entries = [json.loads(line) for line in manifest.splitlines()]
    assert len(entries) == 3 and all(e["state"] == "succeeded" and e["result"]["url"] for e in entries)
    events = [f for _, f in status.client.xrange(status.events_key) if f.get("batch_id") == batch_id]
    assert [e["event"] for e in events] == ["batch_submitted", "batch_completed"]


def test_submitting_the_same_file_again_enqueues_nothing_twice(settings) -> None:
    status, broker, _ = idle_namespace(settings)
    lines = parse_batch(image_lines(5), batch_id="b-resubmit")

    first = submit_lines(status, broker, "b-resubmit", "resubmit", lines[:3])  # a crash after three lines
    second = submit_lines(status, broker, "b-resubmit", "resubmit", lines)
    third = submit_lines(status, broker, "b-resubmit", "resubmit", lines)

    assert (first["enqueued"], second["enqueued"], third["enqueued"]) == (3, 2, 0)
    assert queued_messages(status, PROMPT_BATCH_QUEUE) == 5 and queued_messages(status, PROMPT_QUEUE) == 0


@pytest.mark.usefixtures("workers")
def test_an_interactive_job_goes_ahead_of_a_batch_backlog(settings, status, broker) -> None:
    lines = parse_batch(image_lines(30), batch_id=f"b-backlog-{uuid.uuid4().hex[:6]}")
    batch_id = lines[0].spec.batch_id  # type: ignore[union-attr]
    submit_lines(status, broker, batch_id, "backlog", lines)
    interactive = JobSpec(prompt="an urgent lighthouse", kind=JobKind.image, width=64, height=64,
                          enhance_prompt=False)
    submit_job(broker, status, interactive)

    assert wait_until_finished(status, interactive.id).state == "succeeded"

    unfinished = batch_progress(status, batch_id)["unfinished"]  # type: ignore[index]
    assert unfinished >= 20, f"the interactive job waited for {30 - unfinished} batch jobs"


def test_retry_failed_sends_the_failed_jobs_round_again(settings) -> None:
    status, broker, _ = idle_namespace(settings)
    lines = parse_batch(image_lines(2), batch_id="b-retry")
    submit_lines(status, broker, "b-retry", "retry", lines)
    failed_id = lines[0].spec.id  # type: ignore[union-attr]
    status.transition(failed_id, "failed", error="RuntimeError: the GPU fell over")
    assert batch_progress(status, "b-retry")["counts"]["failed"] == 1  # type: ignore[index]

    assert retry_failed(status, broker, "b-retry") == 1

    record = status.get(failed_id)
    assert record is not None and record.state == "queued" and record.error == ""
    assert batch_progress(status, "b-retry")["finished"] == 0  # type: ignore[index]
    assert queued_messages(status, PROMPT_BATCH_QUEUE) == 3


def test_cancelling_a_batch_cancels_its_jobs_and_completes_it(settings) -> None:
    status, broker, quiet = idle_namespace(settings)
    lines = parse_batch(image_lines(2), batch_id="b-cancel")
    submit_lines(status, broker, "b-cancel", "cancel", lines)

    assert cancel_batch(status, broker, "b-cancel", store=open_store(quiet), url_ttl_s=60) == 2

    progress = batch_progress(status, "b-cancel")
    assert progress is not None and progress["completed"] and progress["counts"]["cancelled"] == 2
    manifest = open_store(quiet).get_bytes(progress["manifest_key"]).decode()
    assert [json.loads(line)["state"] for line in manifest.splitlines()] == ["cancelled", "cancelled"]


def windowed_worker(settings: Settings, artifacts_dir: Path, opens_in_s: int):  # type: ignore[no-untyped-def]
    """A fresh worker whose batch window opens ``opens_in_s`` from now, in a namespace of its own.

    Returns the worker, its store, broker and opening time once a warm-up job has run through it, or
    None (worker stopped) when that left under ``WINDOW_MARGIN_S`` before the window opens.
    """
    windowed = settings.model_copy(update={"namespace": f"batch-window-{uuid.uuid4().hex[:6]}"})
    status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), windowed.namespace)
    broker = build_broker(windowed)
    opens_at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=opens_in_s)).replace(microsecond=0)
    window = f"{opens_at:%H:%M:%S}-{opens_at + dt.timedelta(hours=1):%H:%M:%S}"
    env = {**settings_env(windowed), "FRAMEQUEUE_BATCH_WINDOW": window, "FRAMEQUEUE_BATCH_TIMEZONE": "UTC"}
    worker = WorkerProcess(env, artifacts_dir / "worker-window.log", "--threads", "2")
    warm_up = JobSpec(prompt="a night ferry", kind=JobKind.image, width=64, height=64, enhance_prompt=False)
    submit_job(broker, status, warm_up)
    assert wait_until_finished(status, warm_up.id, timeout_s=300).state == "succeeded"
    if time.time() + WINDOW_MARGIN_S > opens_at.timestamp():
        worker.stop()
        return None
    return worker, status, broker, opens_at


def test_the_window_holds_batch_work_and_releases_it_when_it_opens(
    settings, tiny_profile, artifacts_dir: Path
) -> None:
    # A worker reads its window at start. The window opens a while after that; on a machine too slow to
    # start the worker and serve a job in that while, the next try allows twice as long.
    for opens_in_s in (25, 50, 100, 200):
        if started := windowed_worker(settings, artifacts_dir, opens_in_s):
            break
    else:
        pytest.fail("a fresh worker never served its first job within 200 s")
    worker, status, broker, opens_at = started
    try:
        lines = parse_batch(image_lines(1), batch_id="b-window")
        submit_lines(status, broker, "b-window", "window", lines)
        batch_job = lines[0].spec.id  # type: ignore[union-attr]

        held = wait_for(lambda: (r := status.get(batch_job)) and r.state == "waiting" and r, 60, "the batch job held")
        assert "outside the batch window" in held.wait_reason and held.updated_at < opens_at.timestamp()
        record = wait_until_finished(status, batch_job, timeout_s=300)
    finally:
        worker.stop()

    assert record.state == "succeeded" and record.updated_at >= opens_at.timestamp()


@pytest.mark.parametrize(
    ("window", "now", "wait_s"),
    [("22:00-06:00", "23:30", 0), ("22:00-06:00", "05:59", 0), ("22:00-06:00", "06:00", 16 * 3600),
     ("22:00-06:00", "21:00", 3600), ("09:00-17:00", "08:00", 3600), ("09:00-17:00", "17:30", 15.5 * 3600)],
)
def test_the_window_opens_when_it_says(window: str, now: str, wait_s: float) -> None:
    hours, minutes = map(int, now.split(":"))
    at = dt.datetime(2026, 11, 27, hours, minutes, tzinfo=dt.UTC)
    assert BatchWindow(window).seconds_until_open(at) == wait_s
