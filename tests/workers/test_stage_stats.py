"""Per-stage run times and outcomes: counted by real workers, read back from a real Redis."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from queue_config.catalog import catalog_of
from queue_config.jobs import JobKind, JobSpec, Priority
from queue_config.settings import Settings
from queue_config.stages import STAGES, stage_plan
from tests.queues import IMAGE_BATCH_QUEUE, IMAGE_QUEUE, default_queue
from tests.workers.test_job_flow import wait_until_finished
from workers.jobs import stage_stats
from workers.jobs.messages import StageMessage, enqueue_stage
from workers.jobs.record import JobStatusStore
from workers.jobs.stage_stats import StageHistogram, cumulative, last_hour, record_outcome, record_run
from workers.jobs.submit import submit_job


def by_queue(histograms: list[StageHistogram]) -> dict[str, StageHistogram]:
    return {histogram.queue: histogram for histogram in histograms}


def grown(before: dict[str, StageHistogram], after: dict[str, StageHistogram], queue: str, field: str) -> float:
    old = getattr(before[queue], field) if queue in before else 0
    return float(getattr(after[queue], field)) - old if queue in after else 0.0


@pytest.fixture
def fresh(settings: Settings) -> tuple[redis.Redis, str]:
    """A Redis client and a namespace nothing else writes to."""
    return redis.Redis.from_url(settings.redis_url, decode_responses=True), f"stats-{uuid.uuid4().hex[:8]}"


@pytest.mark.usefixtures("workers")
def test_each_stage_of_a_job_counts_one_successful_run_in_both_views(broker, status: JobStatusStore) -> None:
    before = by_queue(cumulative(status.client, status.namespace))
    spec = JobSpec(prompt="a tin robot reading", kind=JobKind.image, width=64, height=64)
    submit_job(broker, status, spec)
    assert wait_until_finished(status, spec.id).state == "succeeded"

    after = by_queue(cumulative(status.client, status.namespace))
    window = {stats.queue: stats for stats in last_hour(status.client, status.namespace)}

    for stage in stage_plan(spec.kind):
        queue = default_queue(stage)
        assert grown(before, after, queue, "count") == 1, queue
        assert grown(before, after, queue, "succeeded") == 1, queue
        assert grown(before, after, queue, "sum_s") > 0, queue
        assert after[queue].stage == stage and window[queue].stage == stage, queue
        assert window[queue].succeeded >= 1 and window[queue].p50_s is not None, queue
        assert 0 < window[queue].p50_s <= window[queue].p95_s <= stage_stats.BUCKET_BOUNDS_S[-1]  # type: ignore
    assert all(grown(before, after, queue, "count") == 0 for queue in after if after[queue].stage == "frames")


@pytest.mark.usefixtures("workers")
def test_batch_runs_are_counted_apart_from_interactive_ones(broker, status: JobStatusStore) -> None:
    before = by_queue(cumulative(status.client, status.namespace))
    spec = JobSpec(prompt="a moth by a lamp", kind=JobKind.image, width=64, height=64, priority=Priority.batch)
    submit_job(broker, status, spec)
    assert wait_until_finished(status, spec.id).state == "succeeded"

    after = by_queue(cumulative(status.client, status.namespace))

    assert grown(before, after, IMAGE_BATCH_QUEUE, "succeeded") == 1
    assert after[IMAGE_BATCH_QUEUE].stage == "image"
    assert grown(before, after, IMAGE_QUEUE, "succeeded") == 0


@pytest.mark.usefixtures("workers")
def test_retries_and_the_final_failure_of_a_stage_are_counted(
    broker, status: JobStatusStore, settings: Settings
) -> None:
    before = by_queue(cumulative(status.client, status.namespace))
    spec = JobSpec(prompt="a kite that never flies", kind=JobKind.image, width=64, height=64)
    status.create(spec, stage_plan(spec.kind))
    enqueue_stage(broker, "image", StageMessage(job=spec, refs={"prompt": f"jobs/{spec.id}/prompt/never.txt"}),
                  catalog_of(settings))

    assert wait_until_finished(status, spec.id).state == "failed"
    after = by_queue(cumulative(status.client, status.namespace))
    window = {stats.queue: stats for stats in last_hour(status.client, status.namespace)}

    assert grown(before, after, IMAGE_QUEUE, "retried") == STAGES["image"].max_retries
    assert grown(before, after, IMAGE_QUEUE, "failed") == 1
    assert grown(before, after, IMAGE_QUEUE, "count") == 0
    assert window[IMAGE_QUEUE].failed >= 1


def test_buckets_sum_and_percentiles_follow_the_recorded_durations(fresh: tuple[redis.Redis, str]) -> None:
    client, namespace = fresh
    now_s = time.time()
    pipe = client.pipeline(transaction=False)
    for duration_s in (0.2, 0.3, 0.4, 0.9, 7.0, 4000.0):
        record_run(pipe, namespace, "video", duration_s, now_s=now_s)
    record_outcome(pipe, namespace, "video_batch", "failed", now_s=now_s)
    pipe.execute()

    [video, batch] = cumulative(client, namespace)

    assert (video.stage, video.queue, video.count, video.succeeded) == ("video", "video", 6, 6)
    assert video.sum_s == pytest.approx(4008.8)
    buckets = dict(video.buckets)
    assert (buckets[0.1], buckets[0.25], buckets[0.5], buckets[1.0], buckets[10.0]) == (0, 1, 3, 4, 5)
    assert (buckets[1800.0], buckets[float("inf")]) == (5, 6)
    assert video.quantile_s(0.5) == pytest.approx(0.25 + 0.25 * (3 - 1) / 2)
    assert video.quantile_s(0.99) == 1800.0  # past the last finite bound: that bound
    assert (batch.queue, batch.stage, batch.failed, batch.count, batch.quantile_s(0.5)) == \
        ("video_batch", "video", 1, 0, None)


def test_the_last_hour_leaves_out_older_minutes_which_expire(fresh: tuple[redis.Redis, str]) -> None:
    client, namespace = fresh
    now_s = time.time()
    pipe = client.pipeline(transaction=False)
    record_run(pipe, namespace, "upload", 0.02, now_s=now_s - 59 * 60)
    record_run(pipe, namespace, "upload", 3.0, now_s=now_s - 61 * 60)
    record_outcome(pipe, namespace, "upload", "retried", now_s=now_s)
    record_outcome(pipe, namespace, "no_such_stage", "failed", now_s=now_s)
    pipe.execute()
    with pytest.raises(ValueError):
        record_outcome(pipe, namespace, "upload", "succeeded")  # a success has a duration: record_run

    [window] = last_hour(client, namespace, now_s=now_s)

    assert (window.queue, window.succeeded, window.failed, window.retried) == ("upload", 1, 0, 1)
    assert window.p95_s is not None and 0.01 < window.p95_s <= 0.025
    assert [h.count for h in cumulative(client, namespace)] == [2]
    minute = stage_stats.minute_key(namespace, int(now_s // 60))
    assert 0 < client.ttl(minute) <= stage_stats.MINUTE_TTL_S
    assert client.ttl(stage_stats.total_key(namespace)) == -1
