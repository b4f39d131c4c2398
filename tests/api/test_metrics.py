"""``GET /metrics`` over HTTP, on a namespace of its own whose Redis state each test sets up."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dramatiq
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import STAGES, model_of_actor, stage_plan
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import Namespace, namespace_for
from tests.queues import FRAMES_BATCH_QUEUE, FRAMES_QUEUE, IMAGE_BATCH_QUEUE
from tests.servers import wait_for
from workers.jobs.outcome import StageOutcome
from workers.jobs.stage_stats import record_outcome, record_run

TOKEN = "metrics-token"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def scraped(settings: Settings) -> Iterator[tuple[Namespace, httpx.Client]]:
    """A namespace and a client of an API that serves it (no worker: nothing moves unless a test moves it)."""
    ns = namespace_for(settings, "metrics")
    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield ns, client


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample of ``name`` with ``labels``; a queue depth without a model label is its stage's queue's."""
    if name == "framequeue_queue_messages" and "model" not in labels:
        labels["model"] = model_of_actor(labels["stage"]) or ""
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_need_the_token(scraped: tuple[Namespace, httpx.Client]) -> None:
    _, client = scraped

    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{client.base_url}/metrics").status_code == 401


def test_queue_depths_are_by_stage_and_kind(scraped: tuple[Namespace, httpx.Client]) -> None:
    ns, client = scraped
    before = scrape(client)
    for _ in range(2):
        ns.enqueue("video", {"job": {}})
    ns.enqueue("video", {"job": {}}, delay_ms=60_000)
    ns.dead_letter("video", {"job": {}})

    samples = scrape(client)

    for kind, added in (("ready", 2), ("delayed", 1), ("dead", 1), ("in_flight", 0)):
        grew = value(samples, "framequeue_queue_messages", stage="video", kind=kind) - \
            value(before, "framequeue_queue_messages", stage="video", kind=kind)
        assert grew == added, kind
    assert value(samples, "framequeue_workers_alive") >= 1


def test_live_workers_are_counted_per_stage_from_the_worker_registry(
    scraped: tuple[Namespace, httpx.Client], settings: Settings, workers: object
) -> None:
    _, client = scraped
    with api_server(settings.model_copy(update={"api_token": TOKEN})) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as served:

        def with_a_live_worker() -> Samples | None:
            found = scrape(served)
            return found if value(found, "framequeue_workers_live", stage="image") >= 1 else None

        samples = wait_for(with_a_live_worker, 60, "the session's worker in the registry", interval_s=1)
    isolated = scrape(client)

    for stage in STAGES:
        assert value(samples, "framequeue_workers_live", stage=stage) >= 1, stage
        assert ("framequeue_workers_live", frozenset({("stage", stage)})) in isolated
        assert value(isolated, "framequeue_workers_live", stage=stage) == 0, stage


def test_batch_queue_depths_are_reported_apart_from_the_interactive_ones(
    scraped: tuple[Namespace, httpx.Client]
) -> None:
    ns, client = scraped
    before = scrape(client)
    for _ in range(3):
        ns.enqueue(FRAMES_BATCH_QUEUE, {"job": {}})
    ns.dead_letter(FRAMES_BATCH_QUEUE, {"job": {}})

    samples = scrape(client)

    def grew(stage: str, kind: str) -> float:
        return value(samples, "framequeue_queue_messages", stage=stage, kind=kind) - \
            value(before, "framequeue_queue_messages", stage=stage, kind=kind)

    assert (grew(FRAMES_BATCH_QUEUE, "ready"), grew(FRAMES_BATCH_QUEUE, "dead")) == (3, 1)
    assert (grew(FRAMES_QUEUE, "ready"), grew(FRAMES_QUEUE, "dead")) == (0, 0)
    upload_in_flight = frozenset({("stage", "upload_batch"), ("kind", "in_flight"), ("model", "")})
    assert ("framequeue_queue_messages", upload_in_flight) in samples


def test_failures_are_counted_by_stage_and_reason_class(scraped: tuple[Namespace, httpx.Client]) -> None:
    ns, client = scraped
    ns.dead_letter("safety_check", {"job": {}}, "InvalidJob: invalid job: job.steps: Input should be an integer")
    ns.dead_letter("safety_check", {"job": {}}, "InvalidJob: invalid job: Invalid JSON")
    ns.dead_letter("safety_check", {"job": {}}, "TimeLimitExceeded: the stage ran past 120000 ms")

    samples = scrape(client)

    assert value(samples, "framequeue_failures", stage="safety_check", reason="InvalidJob") == 2
    assert value(samples, "framequeue_failures", stage="safety_check", reason="TimeLimitExceeded") == 1


def test_jobs_are_counted_by_state(scraped: tuple[Namespace, httpx.Client]) -> None:
    ns, client = scraped
    before = scrape(client)
    for seconds in (0.5, 1.5, 4.0):
        spec = JobSpec(prompt="a paper boat", kind=JobKind.image, width=64, height=64)
        ns.status.create(spec, stage_plan(spec.kind))
        ns.status.stage_finished(spec.id, "upload", seconds, StageOutcome(final_state="succeeded"))

    samples = scrape(client)

    grew = value(samples, "framequeue_jobs", state="succeeded") - value(before, "framequeue_jobs", state="succeeded")
    assert grew == 3


def test_stage_durations_are_a_histogram_that_only_grows_across_scrapes(
    scraped: tuple[Namespace, httpx.Client]
) -> None:
    ns, client = scraped
    namespace = ns.settings.namespace

    def record(*durations_s: float, outcome: str = "") -> None:
        pipe = ns.status.client.pipeline(transaction=False)
        for duration_s in durations_s:
            record_run(pipe, namespace, "upload_batch", duration_s)
        if outcome:
            record_outcome(pipe, namespace, "upload_batch", outcome)
        pipe.execute()

    record(0.5, 1.5, outcome="retried")
    first = scrape(client)
    record(4.0, outcome="failed")
    second = scrape(client)

    labels = {"stage": "upload", "queue": "upload_batch"}
    assert value(first, "framequeue_stage_duration_seconds_count", **labels) == 2
    assert value(second, "framequeue_stage_duration_seconds_count", **labels) == 3
    assert value(second, "framequeue_stage_duration_seconds_sum", **labels) == pytest.approx(6.0)
    assert value(second, "framequeue_stage_duration_seconds_bucket", le="1.0", **labels) == 1
    assert value(second, "framequeue_stage_duration_seconds_bucket", le="5.0", **labels) == 3
    assert value(second, "framequeue_stage_duration_seconds_bucket", le="+Inf", **labels) == 3
    runs = {outcome: value(second, "framequeue_stage_runs_total", outcome=outcome, **labels)
            for outcome in ("succeeded", "retried", "failed")}
    assert runs == {"succeeded": 3, "retried": 1, "failed": 1}
    assert value(second, "framequeue_stage_duration_seconds_count", stage="upload", queue="upload") == 0


def test_the_oldest_ready_message_age_is_reported_per_queue(scraped: tuple[Namespace, httpx.Client]) -> None:
    ns, client = scraped
    two_minutes_ago_ms = int(time.time() * 1000) - 120_000
    ns.broker.enqueue(dramatiq.Message(queue_name="upload", actor_name="upload", args=({"job": {}},), kwargs={},
                                       options={}, message_timestamp=two_minutes_ago_ms))
    ns.enqueue("upload", {"job": {}})

    samples = scrape(client)

    assert 120 <= value(samples, "framequeue_queue_oldest_message_age_seconds", queue="upload") < 600
    assert value(samples, "framequeue_queue_oldest_message_age_seconds", queue="upload_batch") == 0
    assert ("framequeue_queue_oldest_message_age_seconds", frozenset({("queue", IMAGE_BATCH_QUEUE)})) in samples


def test_rate_limit_waits_are_counted_once_each_across_scrapes(scraped: tuple[Namespace, httpx.Client]) -> None:
    ns, client = scraped
    spec = JobSpec(prompt="a lamp post", kind=JobKind.image, width=64, height=64)
    ns.status.create(spec, stage_plan(spec.kind))
    before = value(scrape(client), "framequeue_rate_limit_waits_total", stage="prompt_enhance")
    for _ in range(2):
        ns.status.stage_waiting(spec.id, "prompt_enhance", "openai:gpt is at 60 requests/min")
    first = scrape(client)
    ns.status.stage_waiting(spec.id, "prompt_enhance", "openai:gpt is at 60 requests/min")
    second = scrape(client)

    assert value(first, "framequeue_rate_limit_waits_total", stage="prompt_enhance") == before + 2
    assert value(second, "framequeue_rate_limit_waits_total", stage="prompt_enhance") == before + 3
    assert value(second, "framequeue_job_events_total", event="waiting") >= 3


def test_key_pools_are_counted_by_state_without_naming_keys(scraped: tuple[Namespace, httpx.Client]) -> None:
    ns, client = scraped
    prefix = f"{ns.settings.namespace}:keys:replicate"
    ns.status.client.hset(f"{prefix}:0a1b2c3d4e5f", mapping={"requests": 3, "successes": 3})
    ns.status.client.hset(f"{prefix}:9f8e7d6c5b4a", mapping={"requests": 1, "disabled_reason": "HTTP 401"})
    ns.status.client.hset(f"{ns.settings.namespace}:keys:openai:5e6f7a8b9c0d", "disabled_reason", "HTTP 401")

    response = client.get("/metrics")
    samples = scrape(client)

    assert value(samples, "framequeue_api_keys", provider="replicate", state="ok") == 1
    assert value(samples, "framequeue_api_keys", provider="replicate", state="disabled") == 1
    assert value(samples, "framequeue_usable_keys", provider="replicate") == 1
    assert ("framequeue_usable_keys", frozenset({("provider", "openai")})) in samples
    assert value(samples, "framequeue_usable_keys", provider="openai") == 0
    assert "0a1b2c3d4e5f" not in response.text
