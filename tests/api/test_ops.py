"""Operator operations against the real Redis, each test in a namespace of its own (no workers)."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from tests.queues import FRAMES_QUEUE, IMAGE_QUEUE, PROMPT_QUEUE, queue_of
from workers import ops
from workers.broker import build_broker
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job

INVALID_REASON = "InvalidJob: invalid job: job.width: Value error, must be a multiple of 8"


@dataclass
class Namespace:
    """A broker and a job store of their own: nothing any other test or worker touches."""

    settings: Settings
    broker: RedisBroker
    status: JobStatusStore

    def enqueue(self, stage: str, payload: Any, *, delay_ms: int | None = None, **options: Any) -> dramatiq.Message:
        queue = queue_of(stage)
        message = dramatiq.Message(queue_name=queue, actor_name=queue, args=(payload,), kwargs={}, options=options)
        return self.broker.enqueue(message, delay=delay_ms)

    def fetch(self, stage: str) -> dict[str, Any]:
        """Take the next message of ``stage`` as a worker would (it is then in flight)."""
        [body] = self.broker.do_fetch(queue_of(stage), 1)
        return json.loads(body)

    def dead_letter(self, stage: str, payload: Any, reason: str = INVALID_REASON, job_id: str = "",
                    **options: Any) -> dramatiq.Message:
        """A message failed for good, as a worker leaves it: on the stage's XQ, its reason recorded.

        Messages fetched before it (the queue's older ones) are put back as a worker would.
        """
        message = self.enqueue(stage, payload, **options)
        others = []
        while (fetched := self.fetch(stage))["message_id"] != message.message_id:
            others.append(fetched["options"]["redis_message_id"])
        if others:
            self.broker.do_requeue(queue_of(stage), *others)
        self.broker.do_nack(queue_of(stage), message.options["redis_message_id"])
        self.status.stage_failed(job_id, stage, reason, message.message_id)
        return message


def namespace_for(settings: Settings, name: str) -> Namespace:
    isolated = settings.model_copy(update={"namespace": f"framequeue-{name}-{uuid.uuid4().hex[:8]}"})
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    return Namespace(isolated, build_broker(isolated), JobStatusStore(client, isolated.namespace))


def cleaned_namespace(settings: Settings, name: str) -> Iterator[Namespace]:
    """A fixture body: a fresh namespace, and every key under it deleted afterwards."""
    namespace = namespace_for(settings, name)
    yield namespace
    client = namespace.status.client
    for key in client.scan_iter(match=f"{namespace.settings.namespace}:*", count=1000):
        client.delete(key)


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    yield from cleaned_namespace(settings, "ops")


def failed_job(ns: Namespace, stage: str = "image") -> tuple[JobSpec, dramatiq.Message]:
    """A job whose ``stage`` message was dead-lettered after every retry."""
    spec = JobSpec(prompt="a heron at dawn", kind=JobKind.image, width=64, height=64)
    ns.status.create(spec, stage_plan(spec.kind))
    ns.status.stage_started(spec.id, stage, stage_plan(spec.kind).index(stage))
    message = ns.dead_letter(stage, {"job": spec.model_dump(mode="json")}, "RuntimeError: out of memory",
                             job_id=spec.id, retries=3)
    return spec, message


def stats_of(ns: Namespace, queue: str) -> ops.QueueStats:
    return next(stats for stats in ops.queue_stats(ns.status) if stats.name == queue)


def test_queue_stats_count_ready_delayed_in_flight_and_dead_messages(ns: Namespace) -> None:
    for _ in range(3):
        ns.enqueue(IMAGE_QUEUE, {"job": {}})
    ns.enqueue(IMAGE_QUEUE, {"job": {}}, delay_ms=60_000)
    ns.fetch(IMAGE_QUEUE)
    ns.dead_letter("upload", {"job": {}})

    assert stats_of(ns, IMAGE_QUEUE) == ops.QueueStats(IMAGE_QUEUE, ready=2, delayed=1, in_flight=1, dead=0)
    assert stats_of(ns, "upload") == ops.QueueStats("upload", ready=0, delayed=0, in_flight=0, dead=1)
    assert [stats.name for stats in ops.queue_stats(ns.status)] == ops.queue_names()


def test_workers_are_listed_with_their_heartbeat_age_and_what_they_hold(ns: Namespace) -> None:
    ns.enqueue(FRAMES_QUEUE, {"job": {}})
    ns.fetch(FRAMES_QUEUE)
    silent_since_ms = (time.time() - 600) * 1000
    ns.status.client.zadd(f"{ns.settings.namespace}:__heartbeats__", {"a-silent-worker": silent_since_ms})

    found = {worker.id: worker for worker in ops.broker_heartbeats(ns.status, heartbeat_timeout_ms=60_000)}

    assert found[ns.broker.broker_id].alive and found[ns.broker.broker_id].in_flight == {FRAMES_QUEUE: 1}
    assert found[ns.broker.broker_id].heartbeat_age_s < 5
    assert not found["a-silent-worker"].alive and found["a-silent-worker"].heartbeat_age_s > 590


def test_a_dead_letter_is_listed_with_its_recorded_reason_and_job(ns: Namespace) -> None:
    spec, message = failed_job(ns)
    unexplained = ns.enqueue(IMAGE_QUEUE, "garbage")
    ns.fetch(IMAGE_QUEUE)
    ns.broker.do_nack(IMAGE_QUEUE, unexplained.options["redis_message_id"])

    letters = {letter.message_id: letter for letter in ops.dead_letters(ns.status, IMAGE_QUEUE)}

    assert letters.keys() == {unexplained.message_id, message.message_id}
    assert letters[unexplained.message_id].reason == "" and letters[unexplained.message_id].job_id == ""
    letter = letters[message.message_id]
    assert (letter.queue, letter.actor, letter.job_id, letter.retries) == (IMAGE_QUEUE, IMAGE_QUEUE, spec.id, 3)
    assert letter.reason == "RuntimeError: out of memory" and letter.redis_id == message.options["redis_message_id"]
    assert abs(letter.dead_at - time.time()) < 5


def test_requeue_puts_the_message_back_with_its_retries_reset_and_reopens_its_job(ns: Namespace) -> None:
    spec, message = failed_job(ns)
    assert ns.status.state_of(spec.id) == "failed"

    assert ops.requeue_dead_letter(ns.broker, ns.status, IMAGE_QUEUE, message.options["redis_message_id"])

    assert stats_of(ns, IMAGE_QUEUE) == ops.QueueStats(IMAGE_QUEUE, ready=1, delayed=0, in_flight=0, dead=0)
    [body] = ops.ready_messages(ns.status, IMAGE_QUEUE)
    assert body["message_id"] == message.message_id and body["args"] == [{"job": spec.model_dump(mode="json")}]
    assert "retries" not in body["options"]
    assert body["options"]["redis_message_id"] != message.options["redis_message_id"]
    record = ns.status.get(spec.id)
    assert record is not None and (record.state, record.error) == ("queued", "")
    assert ns.status.dead_letter_reason(message.message_id) is None
    last_event = ns.status.client.xrevrange(ns.status.events_key, count=1)[0][1]
    assert last_event == {"job_id": spec.id, "event": "requeued", "at": last_event["at"], "stage": "image",
                          "tenant": "operator"}
    assert not ops.requeue_dead_letter(ns.broker, ns.status, IMAGE_QUEUE, message.options["redis_message_id"])


def test_requeue_leaves_a_job_that_did_not_fail_alone(ns: Namespace) -> None:
    spec, message = failed_job(ns)
    ns.status.client.hset(ns.status.job_key(spec.id), "state", "succeeded")

    assert ops.requeue_dead_letter(ns.broker, ns.status, IMAGE_QUEUE, message.options["redis_message_id"])

    assert ns.status.state_of(spec.id) == "succeeded"


def test_delete_drops_the_dead_letter_and_its_reason(ns: Namespace) -> None:
    _, message = failed_job(ns)

    assert ops.delete_dead_letter(ns.status, IMAGE_QUEUE, message.options["redis_message_id"])

    assert ops.dead_letters(ns.status, IMAGE_QUEUE) == [] and stats_of(ns, IMAGE_QUEUE).dead == 0
    assert ns.status.client.hlen(f"{ns.settings.namespace}:{IMAGE_QUEUE}.XQ.msgs") == 0
    assert ns.status.dead_letter_reason(message.message_id) is None
    assert not ops.delete_dead_letter(ns.status, IMAGE_QUEUE, message.options["redis_message_id"])


def test_emptying_a_queue_removes_what_no_worker_holds_and_cancels_those_jobs(ns: Namespace) -> None:
    specs = [JobSpec(prompt=f"a lantern, take {n}", kind=JobKind.image, width=64, height=64) for n in range(3)]
    for spec in specs:
        submit_job(ns.broker, ns.status, spec)
    ns.enqueue(PROMPT_QUEUE, {"job": specs[0].model_dump(mode="json")}, delay_ms=60_000)
    held = ns.fetch(PROMPT_QUEUE)

    removed = ops.empty_queue(ns.status, PROMPT_QUEUE)

    assert removed == 3
    assert stats_of(ns, PROMPT_QUEUE) == ops.QueueStats(PROMPT_QUEUE, 0, 0, 1, 0)
    assert ops.job_id_of(held) == specs[0].id
    assert [ns.status.state_of(spec.id) for spec in specs] == ["cancelled", "cancelled", "cancelled"]
    assert ops.empty_queue(ns.status, PROMPT_QUEUE) == 0


def test_throughput_counts_the_jobs_that_ended_in_each_of_the_last_sixty_minutes(ns: Namespace) -> None:
    for event in ("succeeded", "succeeded", "failed", "running", "waiting"):
        ns.status.emit("some-job", event)

    minutes = ops.throughput(ns.status)

    assert len(minutes) == 60 and minutes[-1].start <= time.time() < minutes[-1].start + 60
    assert all(later.start - earlier.start == 60 for earlier, later in itertools.pairwise(minutes))
    assert (sum(m.succeeded for m in minutes), sum(m.failed for m in minutes)) == (2, 1)
    assert sum(m.succeeded + m.failed for m in minutes[-2:]) == 3


def test_dead_letters_come_newest_first(ns: Namespace) -> None:
    _, older = failed_job(ns)
    _, newer = failed_job(ns)
    xq = f"{ns.settings.namespace}:{IMAGE_QUEUE}.XQ"
    ns.status.client.zadd(xq, {older.options["redis_message_id"]: 1_000, newer.options["redis_message_id"]: 2_000})

    listed = [letter.message_id for letter in ops.dead_letters(ns.status, IMAGE_QUEUE)]
    assert listed == [newer.message_id, older.message_id]


def test_job_counts_are_by_state(ns: Namespace) -> None:
    failed_job(ns)
    failed_job(ns)
    submit_job(ns.broker, ns.status, JobSpec(prompt="a quiet pond", width=64, height=64))

    assert ops.job_counts(ns.status) == {"failed": 2, "queued": 1}
