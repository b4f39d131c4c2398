"""StageProgress: step progress and previews written throttled, never failing the stage."""

from __future__ import annotations

import io
import uuid

import redis
import torch
from PIL import Image

from tests.servers import free_port
from workers.jobs.progress import PREVIEW_MAX_SIDE_PX, StageProgress, preview_key
from workers.jobs.record import JobStatusStore
from workers.jobs.status_writer import StatusWriter
from workers.redis_connection import redis_client


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress_events(status: JobStatusStore, job_id: str) -> list[tuple[str, str, str]]:
    return [(fields["stage"], fields["step"], fields["total"]) for _, fields in status.client.xrange(status.events_key)
            if fields.get("job_id") == job_id and fields.get("event") == "progress"]


def test_steps_are_written_at_most_once_per_interval_and_always_the_last(status: JobStatusStore) -> None:
    job_id, clock = str(uuid.uuid4()), Clock()
    progress = StageProgress(status, job_id, "image", min_interval_s=1.0, clock=clock)

    for step in range(1, 21):  # 20 steps, 0.25 s apart
        progress(step, 20)
        clock.now += 0.25

    assert progress_events(status, job_id) == [("image", str(step), "20") for step in (1, 5, 9, 13, 17, 20)]
    assert status.client.hget(status.job_key(job_id), "progress.image") == "20/20"


def test_a_preview_is_kept_at_most_once_per_preview_interval_small_and_readable(
    status: JobStatusStore, redis_url: str
) -> None:
    job_id, clock = str(uuid.uuid4()), Clock()
    previews: list[int] = []

    def preview(latents: torch.Tensor) -> Image.Image:
        previews.append(int(latents[0, 0, 0, 0]))
        return Image.new("RGB", (512, 256), "red")

    progress = StageProgress(status, job_id, "image", min_interval_s=0.5, preview_interval_s=2.0, preview=preview,
                             clock=clock)
    for step in range(1, 31):  # 30 steps, 0.25 s apart
        progress(step, 30, torch.full((1, 4, 8, 8), float(step)))
        clock.now += 0.25

    assert previews == [1, 9, 17, 25]  # none at the last step: the image itself is seconds away
    binary = redis_client(redis_url)
    stored = Image.open(io.BytesIO(binary.get(preview_key(status, job_id))))
    assert stored.size == (PREVIEW_MAX_SIDE_PX, PREVIEW_MAX_SIDE_PX // 2)
    assert 0 < binary.pttl(preview_key(status, job_id)) <= status.retention_ms


def test_redis_out_of_reach_costs_the_stage_nothing() -> None:
    unreachable = JobStatusStore(redis_client(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True), "gone")
    progress = StageProgress(unreachable, str(uuid.uuid4()), "image")

    progress(1, 2, torch.zeros((1, 4, 8, 8)))  # no exception: the step goes on
    progress(2, 2)


def test_with_a_writer_a_step_only_queues_its_writes_and_they_land_in_order(restartable_redis) -> None:  # type: ignore[no-untyped-def]
    status = JobStatusStore(redis_client(restartable_redis.url, decode_responses=True), "queued-progress")
    writer, job_id = StatusWriter(status.client), str(uuid.uuid4())
    writer.start()
    progress = StageProgress(status, job_id, "frames", writer=writer)
    admin = redis.Redis.from_url(restartable_redis.url)
    admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")  # Redis holds every write back for a minute
    try:
        progress(1, 4)  # returns at once: the step waits for no write
        progress(4, 4)
        assert status.client.hget(status.job_key(job_id), "progress.frames") is None  # reads still answer
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    writer.flush()
    writer.stop()

    assert progress_events(status, job_id) == [("frames", "1", "4"), ("frames", "4", "4")]
    assert status.client.hget(status.job_key(job_id), "progress.frames") == "4/4"
