"""Retention: a finished job's record expires, and a reconciler pass trims what the job left behind."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from storage import open_store
from tests.servers import wait_for
from workers.batches import batch_progress, batches_key, complete_if_done, items_key, submit_lines
from workers.batches.files import parse_batch
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.reconciler import Reconciler
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job

#: Short enough to wait out in a test, long enough to read a TTL before it ends.
RETENTION_S = 3.0
#: Longest a test waits for Redis to expire a record (it is due RETENTION_S after the job finished).
EXPIRY_TIMEOUT_S = RETENTION_S + 10


def short_lived(redis_url: str, data_dir: Path) -> tuple[JobStatusStore, FramequeueBroker, Settings]:
    """A namespace of the test's own, served by no worker, whose finished jobs are kept RETENTION_S."""
    settings = Settings(redis_url=redis_url, namespace=f"retention-{uuid.uuid4().hex[:8]}", data_dir=data_dir,
                        retention_s=RETENTION_S)
    return JobStatusStore.from_settings(settings), build_broker(settings), settings


def image_job(prompt: str = "a lantern in fog") -> JobSpec:
    return JobSpec(prompt=prompt, kind=JobKind.image, width=64, height=64, enhance_prompt=False)


def ttl_ms(status: JobStatusStore, job_id: str) -> int:
    return int(status.client.pttl(status.job_key(job_id)))


def gone(status: JobStatusStore, *job_ids: str) -> bool:
    return status.client.exists(*(status.job_key(job_id) for job_id in job_ids)) == 0


def test_a_finished_job_expires_a_retention_after_it_finished(redis_url: str, tmp_path: Path) -> None:
    status, broker, _ = short_lived(redis_url, tmp_path)
    spec = image_job()
    submit_job(broker, status, spec)
    status.stage_started(spec.id, "prompt_enhance", 0)
    assert ttl_ms(status, spec.id) == -1

    assert status.transition(spec.id, "succeeded", stage="upload")

    assert RETENTION_S * 1000 - 1000 < ttl_ms(status, spec.id) <= RETENTION_S * 1000
    wait_for(lambda: gone(status, spec.id), EXPIRY_TIMEOUT_S, f"the record of job {spec.id} to expire")


def test_a_job_blocked_at_submission_expires_too(redis_url: str, tmp_path: Path) -> None:
    status, broker, _ = short_lived(redis_url, tmp_path)
    spec = image_job("a nude statue")

    assert submit_job(broker, status, spec).state == "blocked"

    assert RETENTION_S * 1000 - 1000 < ttl_ms(status, spec.id) <= RETENTION_S * 1000


def test_an_unfinished_job_never_expires_and_a_failed_one_sent_round_again_stops_expiring(
    redis_url: str, tmp_path: Path
) -> None:
    status, broker, _ = short_lived(redis_url, tmp_path)
    queued, retried = image_job(), image_job()
    submit_job(broker, status, queued)
    submit_job(broker, status, retried)
    status.transition(retried.id, "failed", stage="image", error="boom")
    assert ttl_ms(status, queued.id) == -1 and ttl_ms(status, retried.id) > 0

    # What a batch retry does to a failed job's record; its next stage start makes it unfinished again.
    status.client.hset(status.job_key(retried.id), mapping={"state": "queued", "stage_index": -1})
    status.stage_started(retried.id, "prompt_enhance", 0)

    assert ttl_ms(status, retried.id) == -1


def test_after_expiry_one_reconciler_pass_trims_the_index_events_cancellations_and_dead_letters(
    redis_url: str, tmp_path: Path
) -> None:
    status, broker, _ = short_lived(redis_url, tmp_path)
    unfinished, cancelled, dead, succeeded = (image_job(f"a lantern {n}") for n in range(4))
    for spec in (unfinished, cancelled, dead, succeeded):
        submit_job(broker, status, spec)
    # In this order, so that every trace is older than the record that expires last.
    assert status.cancel(cancelled.id)
    status.stage_failed(dead.id, "image", "InvalidJob: no", message_id="dead-message")
    status.transition(succeeded.id, "succeeded", stage="upload")
    assert status.client.exists(status.cancelled_key, status.dead_letters_key) == 2

    wait_for(lambda: gone(status, cancelled.id, dead.id, succeeded.id), EXPIRY_TIMEOUT_S, "the finished jobs to expire")
    assert [record.id for record in status.list_jobs()] == [unfinished.id]
    trimmed = Reconciler(status, broker).run_once().trimmed

    assert status.client.zrange(status.index_key, 0, -1) == [unfinished.id]
    assert status.client.xlen(status.events_key) == 0
    assert status.client.exists(status.cancelled_key, status.dead_letters_key) == 0
    assert (trimmed.index_entries, trimmed.cancelled, trimmed.dead_letters) == (3, 1, 1) and trimmed.events == 4 + 3
    record = status.get(unfinished.id)
    assert record is not None and record.state == "queued" and ttl_ms(status, unfinished.id) == -1


def test_a_completed_batch_goes_once_its_jobs_have_expired(redis_url: str, tmp_path: Path) -> None:
    status, broker, settings = short_lived(redis_url, tmp_path)
    text = "\n".join(json.dumps({"prompt": f"a lantern {n}", "width": 64, "height": 64}) for n in range(3))
    lines = parse_batch(text, batch_id="night")
    submit_lines(status, broker, "night", "night", lines)
    for line in lines:
        assert line.spec is not None and status.transition(line.spec.id, "succeeded", stage="upload")
    assert complete_if_done(status, open_store(settings), "night", url_ttl_s=60)
    job_ids = [line.spec.id for line in lines if line.spec is not None]
    reconciler = Reconciler(status, broker)
    assert reconciler.run_once().trimmed.batches == 0 and batch_progress(status, "night") is not None

    wait_for(lambda: gone(status, *job_ids), EXPIRY_TIMEOUT_S, "the batch's jobs to expire")
    wait_for(lambda: reconciler.run_once() and status.client.exists(status.batch_key("night")) == 0,
             EXPIRY_TIMEOUT_S, "a reconciler pass to trim the completed batch")

    assert status.client.exists(items_key(status, "night"), batches_key(status), status.index_key) == 0
