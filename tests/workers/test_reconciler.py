"""Nothing lost: atomic acceptance, the reconciler, and a Redis that dies mid-run and comes back."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.api.test_jobs_api import TOKEN, api_server, client_of
from tests.conftest import settings_env
from tests.queues import PROMPT_QUEUE
from tests.servers import RestartableRedis, WorkerProcess, wait_for, worker_and_reconciler
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.reconciler import Reconciler
from workers.jobs.record import TERMINAL_STATES, JobStatusStore
from workers.jobs.submit import submit_job


def image_job(number: int = 0) -> JobSpec:
    return JobSpec(prompt=f"a tin robot {number}", kind=JobKind.image, width=64, height=64, enhance_prompt=False)


def quiet(settings: Settings) -> tuple[Settings, JobStatusStore, FramequeueBroker]:
    """A namespace no worker serves, so what is submitted stays where it was put."""
    namespaced = settings.model_copy(update={"namespace": f"reconcile-{uuid.uuid4().hex[:8]}"})
    status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), namespaced.namespace)
    return namespaced, status, build_broker(namespaced)


def lose_messages(status: JobStatusStore, queue: str) -> int:
    """Drop every message of ``queue`` the way a crash between two writes would: the body and its id."""
    ns, client = status.namespace, status.client
    ids = client.lrange(f"{ns}:{queue}", 0, -1)
    client.delete(f"{ns}:{queue}")
    if ids:
        client.hdel(f"{ns}:{queue}.msgs", *ids)
    return len(ids)


def terminal_events(status: JobStatusStore, job_id: str) -> list[str]:
    return [fields["event"] for _, fields in status.client.xrange(status.events_key)
            if fields.get("job_id") == job_id and fields.get("event") in TERMINAL_STATES]


def test_an_accepted_job_has_its_record_and_its_first_message_together(settings) -> None:
    _, status, broker = quiet(settings)
    spec = image_job()

    assert submit_job(broker, status, spec).state == "queued"

    queue, redis_id = status.client.hget(status.inflight_key, spec.id).split("\t")
    assert queue == PROMPT_QUEUE and status.client.hexists(f"{status.namespace}:{queue}.msgs", redis_id)
    assert status.client.lrange(f"{status.namespace}:{queue}", 0, -1) == [redis_id]
    assert status.client.zscore(status.active_key, spec.id) is not None
    assert Reconciler(status, broker).lost([spec.id]) == []


def test_a_job_whose_message_is_waiting_or_held_is_not_lost(settings) -> None:
    _, status, broker = quiet(settings)
    spec = image_job()
    submit_job(broker, status, spec)
    ns = status.namespace
    # A worker fetching it moves the id to its ack set; the body stays until the ack.
    redis_id = status.client.lpop(f"{ns}:{PROMPT_QUEUE}")
    status.client.sadd(f"{ns}:__acks__.some-worker.{PROMPT_QUEUE}", redis_id)

    assert Reconciler(status, broker, stale_after_s=0).run_once().repaired == []


def test_a_job_that_lost_its_message_is_sent_on_again_and_then_runs_once(
    settings, tiny_profile, artifacts_dir: Path
) -> None:
    namespaced, status, broker = quiet(settings)
    specs = [image_job(n) for n in range(3)]
    for spec in specs:
        submit_job(broker, status, spec)
    assert lose_messages(status, PROMPT_QUEUE) == 3
    reconciler = Reconciler(status, broker, stale_after_s=0)

    assert sorted(reconciler.run_once().repaired) == sorted(spec.id for spec in specs)
    assert reconciler.run_once().repaired == []  # their messages are back: nothing more to do

    worker = WorkerProcess(settings_env(namespaced), artifacts_dir / "worker-reconciled.log", "--threads", "2")
    try:
        for spec in specs:
            wait_for(lambda s=spec: status.state_of(s.id) in TERMINAL_STATES, 180, f"job {spec.id}")
    finally:
        worker.stop()
    for spec in specs:
        assert status.state_of(spec.id) == "succeeded" and terminal_events(status, spec.id) == ["succeeded"]
        assert [f["stage"] for _, f in status.client.xrange(status.events_key)
                if f.get("job_id") == spec.id and f["event"] == "repaired"] == ["prompt_enhance"]


def test_a_job_that_keeps_losing_its_message_fails_saying_so(settings) -> None:
    _, status, broker = quiet(settings)
    spec = image_job()
    submit_job(broker, status, spec)
    reconciler = Reconciler(status, broker, stale_after_s=0, max_repairs=2)

    for _ in range(3):
        lose_messages(status, PROMPT_QUEUE)
        reconciler.run_once()

    record = status.get(spec.id)
    assert record is not None and record.state == "failed"
    assert record.error.startswith("LostMessage:") and "3 times" in record.error
    assert status.client.zscore(status.active_key, spec.id) is None


def test_resubmitting_a_job_that_lost_its_message_sends_it_on_again(settings) -> None:
    _, status, broker = quiet(settings)
    spec = image_job()
    submit_job(broker, status, spec)
    lose_messages(status, PROMPT_QUEUE)

    again = submit_job(broker, status, spec)

    assert (again.created, again.state) == (False, "queued")
    assert status.client.llen(f"{status.namespace}:{PROMPT_QUEUE}") == 1
    assert submit_job(broker, status, spec).created is False
    assert status.client.llen(f"{status.namespace}:{PROMPT_QUEUE}") == 1  # present now: nothing added


def test_every_job_finishes_once_when_redis_dies_mid_run_and_comes_back(
    settings, tiny_profile, artifacts_dir: Path, restartable_redis: RestartableRedis
) -> None:
    own = settings.model_copy(update={"redis_url": restartable_redis.url, "namespace": "redis-restart"})
    status = JobStatusStore(redis.Redis.from_url(own.redis_url, decode_responses=True), own.namespace)
    broker = build_broker(own)
    specs = [JobSpec(prompt=f"a harbour at dawn {n}", kind=JobKind.video, width=64, height=64, num_frames=8, fps=8,
                     enhance_prompt=False, seed=n) for n in range(16)]
    with worker_and_reconciler(settings_env(own), artifacts_dir, "redis-restart") as worker:
        for spec in specs:
            submit_job(broker, status, spec)
        wait_for(lambda: sum(status.state_of(s.id) in TERMINAL_STATES for s in specs) >= 2, 180, "the first jobs")
        seen = len(worker.log_text())
        restartable_redis.kill()
        wait_for(lambda: "onnection" in worker.log_text()[seen:], 60, "the worker to notice that Redis is gone")
        restartable_redis.start()

        wait_for(lambda: all(status.state_of(s.id) in TERMINAL_STATES for s in specs), 300,
                 "every job to finish after Redis came back")

    for spec in specs:
        assert status.state_of(spec.id) == "succeeded", status.get(spec.id)
        assert terminal_events(status, spec.id) == ["succeeded"]


def test_repairs_are_counted_on_metrics_and_shown_on_the_dashboard(settings) -> None:
    namespaced, status, broker = quiet(settings)
    spec = image_job()
    submit_job(broker, status, spec)
    with api_server(namespaced.model_copy(update={"api_token": TOKEN})) as url, client_of(url) as client:
        assert "no pass yet" in client.get("/dashboard").text
        lose_messages(status, PROMPT_QUEUE)

        assert Reconciler(status, broker, stale_after_s=0).run_once().repaired == [spec.id]

        metrics = client.get("/metrics").text
        assert "framequeue_reconciler_repairs_total 1.0" in metrics
        assert "framequeue_reconciler_gave_up_total 0.0" in metrics
        page = client.get("/dashboard").text
        assert '<b data-count="repaired">1</b> jobs repaired' in page
