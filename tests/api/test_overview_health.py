"""The overview's health reads: a row per stage queue, why jobs wait, each limit used against configured."""

from __future__ import annotations

import re
import time

from queue_config.jobs import JobKind, JobSpec
from queue_config.remote import ModelLimits, ProviderConfig, RemoteConfig
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from tests.api.test_dashboard import TOKEN, signed_in
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import failed_job, namespace_for
from tests.queues import FRAMES_BATCH_QUEUE, IMAGE_QUEUE
from workers import ops
from workers.jobs.stage_stats import record_outcome, record_run
from workers.keys.pool import redis_now_ms
from workers.limits import JobCap, RedisLimiter


def test_each_stage_queue_has_a_row_with_its_backlog_and_last_hour(settings: Settings) -> None:
    ns = namespace_for(settings, "rows")
    failed_job(ns)
    old = ns.enqueue(IMAGE_QUEUE, {"job": {"id": "a"}})
    ns.status.client.hset(f"{ns.settings.namespace}:{IMAGE_QUEUE}.msgs", old.options["redis_message_id"],
                          old.copy(message_timestamp=int((time.time() - 90) * 1000)).encode())
    ns.enqueue(IMAGE_QUEUE, {"job": {"id": "b"}}, delay_ms=60_000)
    ns.enqueue(FRAMES_BATCH_QUEUE, {"job": {"id": "c"}})
    ns.fetch(FRAMES_BATCH_QUEUE)
    pipe = ns.status.client.pipeline()
    for duration_s in (0.2, 0.3, 0.4, 8.0):
        record_run(pipe, ns.settings.namespace, IMAGE_QUEUE, duration_s)
    record_outcome(pipe, ns.settings.namespace, IMAGE_QUEUE, "failed")
    pipe.execute()

    rows = {row.queue: row for row in ops.stage_rows(ns.status)}

    image = rows[IMAGE_QUEUE]
    assert (image.ready, image.delayed, image.running, image.dead) == (1, 1, 0, 1)
    assert 85 < image.oldest_age_s < 150 and (image.succeeded, image.failed) == (4, 1)
    assert image.p50_s is not None and image.p95_s is not None and 0.25 <= image.p50_s <= 0.5 < image.p95_s <= 10
    assert rows[FRAMES_BATCH_QUEUE].running == 1 and rows[FRAMES_BATCH_QUEUE].batch
    assert rows["upload"].p50_s is None and rows["upload"].oldest_age_s == 0
    assert [row.queue for row in rows.values()] == ops.queue_names()


def test_waiting_jobs_are_grouped_by_reason_without_the_wait_they_were_given(settings: Settings) -> None:
    ns = namespace_for(settings, "waits")
    reasons = ["waiting 1200 ms: every sim key is at its quota or cooling down",
               "waiting 80 ms: every sim key is at its quota or cooling down",
               "waiting 250 ms: sim:model is at its concurrency limit (2)"]
    for reason in [*reasons, ""]:
        spec = JobSpec(prompt="a gull", kind=JobKind.image, width=64, height=64)
        ns.status.create(spec, stage_plan(spec.kind))
        if reason:
            ns.status.stage_waiting(spec.id, "image", reason)

    found = ops.wait_reasons(ns.status)
    few = ops.wait_reasons(ns.status, scan_max=2)

    assert found.counts == [("every sim key is at its quota or cooling down", 2),
                            ("sim:model is at its concurrency limit (2)", 1)]
    assert (found.scanned, found.unfinished) == (4, 4) and (few.scanned, few.unfinished) == (2, 4)


def test_each_limit_is_read_as_used_against_configured(settings: Settings) -> None:
    ns = namespace_for(settings, "limits")
    name, client = ns.settings.namespace, ns.status.client
    config = RemoteConfig(providers={"sim": ProviderConfig(kind="openai", base_url="http://unused")},
                          limits=[ModelLimits(provider="sim", model="m", requests_per_minute=60, concurrency=2)])
    limiter = RedisLimiter(client, name)
    for holder in ("one", "two"):
        limiter.acquire_wait_ms("sim:m", 2, holder, 60_000)
    for _ in range(4):
        limiter.rate_wait_ms("sim:m", 60, reserve=True)
    client.hset(f"{name}:keys:sim:aaaaaaaaaaaa", mapping={"requests": 1})
    client.hset(f"{name}:keys:sim:bbbbbbbbbbbb", mapping={"disabled_reason": "HTTP 401"})
    client.hset(f"{name}:keys:sim:cccccccccccc", mapping={"tat_ms": int(redis_now_ms(client) + 60_000)})
    specs = [JobSpec(prompt="a crab", kind=JobKind.image, width=64, height=64) for _ in range(3)]
    for spec in specs:
        ns.status.create(spec, stage_plan(spec.kind))
    JobCap(client, ns.status.active_key, name).take("owner-fp", [spec.id for spec in specs], 10)
    ns.status.transition(specs[0].id, "succeeded")
    capped = ns.settings.model_copy(update={"api_max_queued_jobs": 10, "api_requests_per_minute": 30})

    found = {(limit.kind, limit.name): limit for limit in ops.limits_usage(ns.status, capped, config, "owner-fp")}

    assert found["concurrency", "sim:m"].used == 2 and found["concurrency", "sim:m"].full
    assert 3 <= found["rate", "sim:m"].used <= 4 and found["rate", "sim:m"].configured == 60
    keys = found["keys disabled, cooling or at quota", "sim"]
    assert (keys.used, keys.configured) == (2, 3) and not keys.full
    assert (found["unfinished jobs", "API token"].used, found["unfinished jobs", "API token"].configured) == (2, 10)
    assert found["rate", "api:owner-fp"].used == 0 and found["rate", "api:owner-fp"].configured == 30


def test_the_overviews_state_counts_cover_only_the_newest_jobs_when_bounded(settings: Settings) -> None:
    ns = namespace_for(settings, "counts")
    failed_job(ns)
    failed_job(ns)
    newest = JobSpec(prompt="a vole", kind=JobKind.image, width=64, height=64)
    ns.status.create(newest, stage_plan(newest.kind))

    assert ops.job_counts(ns.status) == {"failed": 2, "queued": 1}
    assert ops.job_counts(ns.status, newest=2) == {"failed": 1, "queued": 1}
    assert ops.job_counts(ns.status, newest=1) == {"queued": 1}


def test_the_overview_shows_the_rows_reasons_and_limits(settings: Settings) -> None:
    ns = namespace_for(settings, "overview")
    spec = JobSpec(prompt="a newt", kind=JobKind.image, width=64, height=64)
    ns.status.create(spec, stage_plan(spec.kind))
    ns.status.stage_waiting(spec.id, "image", "waiting 90 ms: outside the batch window 22:00-06:00")
    ns.enqueue(IMAGE_QUEUE, {"job": {"id": spec.id}})

    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, signed_in(url) as client:
        page = client.get("/dashboard").text
        data = client.get("/dashboard?format=json").json()

    row = re.search(rf'<tr data-queue="{re.escape(IMAGE_QUEUE)}">.*?</tr>', page, re.S)
    assert row and re.search(r'data-col="ready">1<', row.group(0)) and 'data-col="p95">—<' in row.group(0)
    assert 'data-reason="outside the batch window 22:00-06:00"' in page
    assert 'data-limit="unfinished jobs:API token"' in page
    assert data["waiting"]["counts"] == [["outside the batch window 22:00-06:00", 1]]
    assert [row["queue"] for row in data["stages"]] == ops.queue_names()
