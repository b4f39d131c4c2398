"""Poison on a stage queue is dead-lettered with its reason, and never holds up a worker's other messages.

One worker process, in a namespace of its own, is started on queues where raw poison was pushed the
way dramatiq's dispatch.lua enqueues (the body in ``{queue}.msgs``, the id on the list), each poison
message ahead of good jobs in the same prefetch.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.conftest import settings_env
from tests.queues import FRAMES_QUEUE, IMAGE_QUEUE, PROMPT_QUEUE
from tests.servers import WorkerProcess, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers import ops
from workers.jobs.record import JobRecord
from workers.jobs.submit import submit_job

#: Good jobs, submitted behind the poison on the first stage's queue.
GOOD_JOBS = 12
#: The worker's threads: dramatiq prefetches twice as many messages per queue, so a fetch takes a
#: poison message and the good ones behind it.
WORKER_THREADS = 2
#: Generous: every tiny model loads cold in a fresh worker process.
JOBS_TIMEOUT_S = 240
#: The queues the poison is on.
QUEUES = (PROMPT_QUEUE, FRAMES_QUEUE)


@dataclass(frozen=True)
class Poison:
    queue: str
    redis_id: str
    body: bytes
    #: How the recorded reason starts.
    reason: str


@dataclass
class PoisonedRun:
    """What a worker did with poison among good jobs."""

    ns: Namespace
    poison: dict[str, Poison]
    #: The ``stage-not-in-plan`` message's job.
    off_plan: JobSpec
    #: An id pushed with no body: nothing to dead-letter, and no worker must keep holding it.
    bodiless_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: The good jobs, once finished.
    records: list[JobRecord] = field(default_factory=list)
    log: str = ""

    def worker(self, artifacts_dir: Path, name: str) -> WorkerProcess:
        threads = ("--processes", "1", "--threads", str(WORKER_THREADS))
        return WorkerProcess(settings_env(self.ns.settings), artifacts_dir / f"worker-poison-{name}.log", *threads)

    def letters(self) -> dict[str, ops.DeadLetter]:
        return {letter.redis_id: letter for queue in QUEUES for letter in ops.dead_letters(self.ns.status, queue)}

    def ack_sets(self) -> set[str]:
        """Every broker-side id some worker has fetched and not acknowledged."""
        client = raw_client(self.ns)
        return {member.decode() for key in client.scan_iter(match=f"{self.ns.settings.namespace}:__acks__.*")
                for member in client.smembers(key)}


def raw_client(ns: Namespace) -> redis.Redis:
    return redis.Redis.from_url(ns.settings.redis_url)


def push_raw(ns: Namespace, poison: Poison) -> None:
    """Put ``poison`` on its queue as dramatiq's dispatch.lua enqueues a message."""
    key = f"{ns.settings.namespace}:{poison.queue}"
    pipe = raw_client(ns).pipeline(transaction=True)
    pipe.hset(f"{key}.msgs", poison.redis_id, poison.body)
    pipe.rpush(key, poison.redis_id)
    pipe.execute()


def message_poison(queue: str, actor: object, payload: object, reason: str) -> Poison:
    """A message as dramatiq's RedisBroker encodes one, its broker-side id among its options."""
    redis_id = str(uuid.uuid4())
    body = {"queue_name": queue, "actor_name": actor, "args": [payload], "kwargs": {},
            "options": {"redis_message_id": redis_id}, "message_id": str(uuid.uuid4()),
            "message_timestamp": int(time.time() * 1000)}
    return Poison(queue, redis_id, json.dumps(body).encode(), reason)


def image_job(prompt: str) -> JobSpec:
    return JobSpec(prompt=prompt, kind=JobKind.image, width=64, height=64)


def poison_of_every_kind(off_plan: JobSpec) -> dict[str, Poison]:
    job = {"job": image_job("a lost parcel").model_dump(mode="json")}
    return {
        "undecodable": Poison(PROMPT_QUEUE, str(uuid.uuid4()), b"\xff\xfe\x00 not a message \x80",
                              "DecodeError: not a message: UnicodeDecodeError"),
        "wrong-shape": Poison(PROMPT_QUEUE, str(uuid.uuid4()), json.dumps({"job": {"prompt": "a cat"}}).encode(),
                              "DecodeError: not a message: missing: queue_name"),
        "wrong-field-type": message_poison(PROMPT_QUEUE, [PROMPT_QUEUE], job,
                                           "DecodeError: not a message: of the wrong type: actor_name"),
        "unknown-actor": message_poison(PROMPT_QUEUE, "no_such_stage", job,
                                        "ActorNotFound: no actor named 'no_such_stage'"),
        "stage-not-in-plan": message_poison(FRAMES_QUEUE, FRAMES_QUEUE, {"job": off_plan.model_dump(mode="json")},
                                            "InvalidJob: stage 'frames' is not part of a image job"),
    }


@pytest.fixture(scope="module")
def poisoned(settings: Settings, tiny_profile, artifacts_dir: Path) -> Iterator[PoisonedRun]:  # type: ignore[no-untyped-def]
    """Poison, each message ahead of three good jobs, served by a fresh worker until every job is done."""
    namespaces = cleaned_namespace(settings, "poison")
    ns = next(namespaces)
    off_plan = image_job("a river delta from above")
    run, good = PoisonedRun(ns, poison_of_every_kind(off_plan), off_plan), []
    raw_client(ns).rpush(f"{ns.settings.namespace}:{PROMPT_QUEUE}", run.bodiless_id)
    ahead_of_good = [kind for kind in run.poison.values() if kind.queue == PROMPT_QUEUE]
    for kind in run.poison.values():
        push_raw(ns, kind)
        for _ in range(GOOD_JOBS // len(ahead_of_good) if kind in ahead_of_good else 0):
            good.append(image_job(f"a lighthouse at dusk, number {len(good)}"))
            submit_job(ns.broker, ns.status, good[-1])

    worker = run.worker(artifacts_dir, "first")
    try:
        run.records.extend(wait_until_finished(ns.status, spec.id, JOBS_TIMEOUT_S) for spec in good)
        wait_for(lambda: run.letters().keys() >= {kind.redis_id for kind in run.poison.values()}, 60,
                 "every poison message on a dead-letter queue")
        run.log = worker.log_text()
    finally:
        worker.stop()
    try:
        yield run
    finally:
        next(namespaces, None)


def test_every_good_job_behind_the_poison_succeeds(poisoned: PoisonedRun) -> None:
    assert len(poisoned.records) == GOOD_JOBS
    assert [record.state for record in poisoned.records] == ["succeeded"] * GOOD_JOBS


def test_each_poison_message_is_dead_lettered_with_its_reason(poisoned: PoisonedRun) -> None:
    letters = poisoned.letters()

    for name, kind in poisoned.poison.items():
        assert letters[kind.redis_id].reason.startswith(kind.reason), (name, letters[kind.redis_id])
    undecodable = poisoned.poison["undecodable"].redis_id
    assert letters[undecodable].message_id == undecodable  # the synthetic id its reason is recorded under
    assert letters[poisoned.poison["stage-not-in-plan"].redis_id].job_id == poisoned.off_plan.id
    assert raw_client(poisoned.ns).hget(f"{poisoned.ns.settings.namespace}:{PROMPT_QUEUE}.XQ.msgs",
                                        undecodable) == poisoned.poison["undecodable"].body


def test_no_worker_holds_the_poison_and_the_queues_are_empty(poisoned: PoisonedRun) -> None:
    client, namespace = raw_client(poisoned.ns), poisoned.ns.settings.namespace

    assert not poisoned.ack_sets() & {*(kind.redis_id for kind in poisoned.poison.values()), poisoned.bodiless_id}
    assert [(client.llen(f"{namespace}:{queue}"), client.hlen(f"{namespace}:{queue}.msgs")) for queue in QUEUES] \
        == [(0, 0)] * len(QUEUES)
    assert "Consumer encountered an unexpected error" not in poisoned.log


def test_a_restarted_worker_is_not_handed_the_poison_again(poisoned: PoisonedRun, artifacts_dir: Path) -> None:
    dead_at = {redis_id: letter.dead_at for redis_id, letter in poisoned.letters().items()}
    after_restart = image_job("a lighthouse at dawn, after the restart")

    worker = poisoned.worker(artifacts_dir, "restarted")
    try:
        submit_job(poisoned.ns.broker, poisoned.ns.status, after_restart)
        record = wait_until_finished(poisoned.ns.status, after_restart.id, JOBS_TIMEOUT_S)
    finally:
        worker.stop()

    assert record.state == "succeeded"
    assert {redis_id: letter.dead_at for redis_id, letter in poisoned.letters().items()} == dead_at
    assert not any(kind.redis_id in worker.log_text() for kind in poisoned.poison.values())
    assert not poisoned.ack_sets() & {kind.redis_id for kind in poisoned.poison.values()}


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    yield from cleaned_namespace(settings, "poison-listing")


def test_the_dead_letter_listing_copes_with_letters_that_are_not_messages(ns: Namespace) -> None:
    client, xq = raw_client(ns), f"{ns.settings.namespace}:{IMAGE_QUEUE}.XQ"
    bodies = {"undecodable": b"\xff\xfe\x00 not a message", "not-a-message": b'["a", "list"]'}
    for redis_id, body in bodies.items():  # as a worker's nack leaves them
        client.zadd(xq, {redis_id: time.time() * 1000})
        client.hset(f"{xq}.msgs", redis_id, body)
    ns.status.stage_failed("", "", "DecodeError: not a message", "undecodable")
    message = ns.dead_letter(IMAGE_QUEUE, {"job": image_job("a heron").model_dump(mode="json")}, "InvalidJob: no")

    letters = {letter.redis_id: letter for letter in ops.dead_letters(ns.status, IMAGE_QUEUE)}

    assert letters.keys() == {"undecodable", "not-a-message", message.options["redis_message_id"]}
    assert (letters["undecodable"].message_id, letters["undecodable"].reason) == (
        "undecodable", "DecodeError: not a message")
    assert (letters["not-a-message"].actor, letters["not-a-message"].reason) == ("", "")
    assert not ops.requeue_dead_letter(ns.broker, ns.status, IMAGE_QUEUE, "undecodable")
    assert client.hget(f"{xq}.msgs", "undecodable") == bodies["undecodable"]
    assert ops.delete_dead_letter(ns.status, IMAGE_QUEUE, "undecodable")
    assert ops.delete_dead_letter(ns.status, IMAGE_QUEUE, "not-a-message")
    assert ns.status.dead_letter_reason("undecodable") is None
    assert [letter.redis_id for letter in ops.dead_letters(ns.status, IMAGE_QUEUE)] == [
        message.options["redis_message_id"]]
