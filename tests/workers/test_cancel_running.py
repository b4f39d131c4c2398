"""Cancelling a job stops the stage that is running it, within a step, and frees the worker thread.

A worker of its own (one process, one thread, its own namespace) runs a job whose stage takes
seconds on the tiny profile, once to the end to time the stage, then again to be cancelled as soon
as its record says that stage is running. A small job submitted right after the cancel can only
run once the thread is free, so how soon it finishes shows how soon the stage gave the thread up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import cast

import boto3
import pytest
import redis

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.servers import WorkerProcess, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.submit import submit_job

#: Generous: the worker's first job loads every tiny model cold, and the machine may be busy.
WARM_UP_TIMEOUT_S = 300
JOB_TIMEOUT_S = 600
#: A stage this long, uncancelled, is long enough to tell a stopped stage from one that ran to its end.
MIN_STAGE_S = 5.0
#: The cancelled stage must have given its thread back within this share of the time it had left.
FREED_SHARE_OF_REMAINING = 1 / 3

#: Jobs whose one stage takes seconds on the tiny profile (many diffusion steps, or many frames), by side.
#: Each is run twice (timed, then cancelled): ``cache=False``, or the second would be served from the first.
SLOW_JOBS: dict[str, Callable[[int], JobSpec]] = {
    "image": lambda side_px: JobSpec(prompt="a slow heron", kind=JobKind.image, width=side_px, height=side_px,
                                     steps=50, enhance_prompt=False, cache=False),
    "frames": lambda side_px: JobSpec(prompt="a slow tide", kind=JobKind.video, width=side_px, height=side_px,
                                      steps=1, num_frames=240, fps=24, frames_backend="camera",
                                      enhance_prompt=False, cache=False),
}
#: Sides tried in turn until the stage runs ``MIN_STAGE_S``: a fast, idle machine gets a larger job.
SIDES_PX = {"image": (192, 384, 768), "frames": (256, 512, 1024)}


def small_job() -> JobSpec:
    return JobSpec(prompt="a quick sparrow", kind=JobKind.image, width=64, height=64, steps=1, enhance_prompt=False)


@dataclass
class Worker:
    status: JobStatusStore
    broker: FramequeueBroker
    settings: Settings


@pytest.fixture(scope="module")
def worker(settings: Settings, tiny_profile, artifacts_dir: Path) -> Iterator[Worker]:  # type: ignore[no-untyped-def]
    """A worker with one thread in a namespace of its own, warmed up by one small job."""
    own = settings.model_copy(update={"namespace": f"cancel-{uuid.uuid4().hex[:8]}"})
    status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), own.namespace)
    broker = build_broker(own)
    process = WorkerProcess(settings_env(own), artifacts_dir / "worker-cancel.log",
                            "--processes", "1", "--threads", "1")
    try:
        warm_up = small_job()
        submit_job(broker, status, warm_up)
        assert wait_until_finished(status, warm_up.id, timeout_s=WARM_UP_TIMEOUT_S).state == "succeeded"
        yield Worker(status, broker, own)
    finally:
        process.stop()


def running_at(status: JobStatusStore, job_id: str, stage: str) -> JobRecord | None:
    record = status.get(job_id)
    return record if record is not None and record.state == "running" and record.stage == stage else None


def stored_keys(settings: Settings, prefix: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    listing = client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def job_events(status: JobStatusStore, job_id: str) -> list[str]:
    """The job's state changes and notes, in order (its ``progress`` events left out)."""
    entries = cast("list[tuple[str, dict[str, str]]]", status.client.xrange(status.events_key))
    return [fields["event"] for _, fields in entries if fields["job_id"] == job_id and fields["event"] != "progress"]


def timed_slow_job(worker: Worker, stage: str) -> tuple[Callable[[], JobSpec], float]:
    """Jobs slow in ``stage``, and how long that stage took when one ran to its end uncancelled."""
    for side_px in SIDES_PX[stage]:
        spec = SLOW_JOBS[stage](side_px)
        submit_job(worker.broker, worker.status, spec)
        finished = wait_until_finished(worker.status, spec.id, timeout_s=JOB_TIMEOUT_S)
        assert finished.state == "succeeded", finished.error
        if finished.timings_s[stage] >= MIN_STAGE_S:
            break
    return partial(SLOW_JOBS[stage], side_px), finished.timings_s[stage]


@pytest.mark.parametrize("stage", list(SLOW_JOBS))
def test_cancelling_a_running_stage_stops_it_within_a_step_and_frees_the_worker_thread(
    worker: Worker, stage: str
) -> None:
    status, broker = worker.status, worker.broker
    slow_job, stage_s = timed_slow_job(worker, stage)

    # The same job again, cancelled as the API cancels it once that stage is running; then a small job.
    job = slow_job()
    submit_job(broker, status, job)
    started = wait_for(lambda: running_at(status, job.id, stage), JOB_TIMEOUT_S, f"{stage} of job {job.id} to run")
    cancelled_at, cancelled_at_epoch = time.monotonic(), time.time()
    assert status.cancel(job.id)
    after = small_job()
    submit_job(broker, status, after)

    # The stage has given its thread back once its timing is recorded, whether it stopped or ran to the end.
    stopped = wait_for(lambda: (r := status.get(job.id)) and stage in r.timings_s and r, JOB_TIMEOUT_S,
                       f"the {stage} stage of job {job.id} to end", interval_s=0.02)
    freed_s = time.monotonic() - cancelled_at
    assert wait_until_finished(status, after.id, timeout_s=JOB_TIMEOUT_S).state == "succeeded"
    small_job_s = time.monotonic() - cancelled_at

    # The thread was free well before the stage would have ended, and the next job ran meanwhile.
    remaining_s = stage_s - (cancelled_at_epoch - started.updated_at)
    print(f"\n{stage} ({job.width} px): uncancelled {stage_s:.2f} s, {remaining_s:.2f} s left at the cancel; "
          f"thread free {freed_s:.2f} s after it ({stopped.stopped_at}); the small job done at {small_job_s:.2f} s")
    assert freed_s < FREED_SHARE_OF_REMAINING * remaining_s
    assert small_job_s < remaining_s
    # The job stays cancelled, says where it stopped, and nothing of it ran on, retried or was published.
    record = status.get(job.id)
    assert record is not None and record.state == "cancelled" and record.stage == stage
    assert record.error == "cancelled on request" and record.stopped_at.startswith(f"{stage}: ")
    assert record.timings_s[stage] < stage_s
    earlier = record.stages[: record.stages.index(stage) + 1]
    assert set(record.attempts) == set(earlier) and record.attempts[stage] == 1
    assert job_events(status, job.id) == ["queued", *["running"] * len(earlier), "cancelled"]
    assert len(record.artifacts) == len(earlier) - 1  # one from each stage before, none from this one
    assert {key.split("/")[2] for key in stored_keys(worker.settings, f"jobs/{job.id}/")} == set(record.artifacts)
    assert not record.result_key and not stored_keys(worker.settings, f"manifests/{job.id}")
    dead_letters = [json.loads(entry) for entry in status.client.hvals(status.dead_letters_key)]
    assert [entry for entry in dead_letters if entry["job_id"] == job.id] == []
