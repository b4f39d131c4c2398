"""An idle consumer is woken by the enqueue: a stage hop does not wait for the next poll.

Each test stands one consumer on an empty queue the way a long-idle worker stands there (its
backoff at the poll timeout, here 60 s), then enqueues. The consumer must hand the message over
well within one poll: a consumer that only polled would sleep the whole minute.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from types import SimpleNamespace

import dramatiq
import pytest
from dramatiq.broker import MessageProxy

from queue_config.catalog import catalog_of
from queue_config.jobs import JobSpec
from queue_config.settings import Settings
from tests.queues import IMAGE_QUEUE
from tests.servers import wait_for
from workers import consumer as consumer_module
from workers.broker import FramequeueBroker, build_broker
from workers.consumer import WAKE_TOKENS_KEPT, FramequeueConsumer, WakeOnShutdown, wake_key
from workers.jobs.messages import StageMessage, stage_message
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job

#: The consumer's poll timeout: a consumer woken only by polling would wait this long.
POLL_MS = 60_000
#: How long the test waits for the hand-over: well within one poll.
WOKEN_WITHIN_S = 20


@pytest.fixture
def own_broker(settings: Settings) -> Iterator[FramequeueBroker]:
    broker = build_broker(settings.model_copy(update={"namespace": f"wake-{uuid.uuid4().hex[:8]}"}))
    # The consumers here wait up to a minute: longer than redis-py's default read timeout, which the
    # consumer keeps its waits under (a consumer that only polled would then poll every few seconds).
    broker.client.connection_pool.connection_kwargs["socket_timeout"] = None
    yield broker
    broker.close()


def idle_consumer(broker: FramequeueBroker, queue: str) -> FramequeueConsumer:
    """A consumer of ``queue`` as a long-idle worker has it: backed off to its full poll timeout."""
    broker.declare_queue(queue)
    consumer = broker.consume(queue, prefetch=2, timeout=POLL_MS)
    assert isinstance(consumer, FramequeueConsumer)
    consumer.misses = 64
    return consumer


def next_message_in_background(consumer: FramequeueConsumer) -> Future[MessageProxy]:
    """Iterate ``consumer`` on a thread, as dramatiq's consumer thread does, until it yields a message."""
    found: Future[MessageProxy] = Future()

    def run() -> None:
        for message in consumer:
            if message is not None:
                found.set_result(message)
                return

    threading.Thread(target=run, daemon=True).start()
    return found


def waiting_on_wake_list(broker: FramequeueBroker, queue: str) -> bool:
    """Whether some client is blocked in BLPOP on ``queue``'s wake list (the consumer has gone idle)."""
    clients = broker.client.client_list()
    return any(entry.get("cmd") == "blpop" for entry in clients) and broker.client.llen(
        wake_key(broker.namespace, queue)) == 0


def test_an_enqueue_wakes_the_idle_consumer_at_once(own_broker: FramequeueBroker) -> None:
    consumer = idle_consumer(own_broker, IMAGE_QUEUE)
    found = next_message_in_background(consumer)
    wait_for(lambda: waiting_on_wake_list(own_broker, IMAGE_QUEUE), 20, "the consumer to go idle")

    sent = own_broker.enqueue(dramatiq.Message(queue_name=IMAGE_QUEUE, actor_name=IMAGE_QUEUE, args=("x",),
                                               kwargs={}, options={}))

    message = found.result(timeout=WOKEN_WITHIN_S)
    assert message.message_id == sent.message_id


def test_accepting_a_job_wakes_the_consumer_of_its_first_stage(
    own_broker: FramequeueBroker, settings: Settings
) -> None:
    status = JobStatusStore(own_broker.client, own_broker.namespace)
    spec = JobSpec(prompt="a lighthouse at dusk", enhance_prompt=False)
    first = stage_message("prompt_enhance", StageMessage(job=spec), catalog_of(settings))
    consumer = idle_consumer(own_broker, first.queue_name)
    found = next_message_in_background(consumer)
    wait_for(lambda: waiting_on_wake_list(own_broker, first.queue_name), 20, "the consumer to go idle")

    submit_job(own_broker, status, spec)

    message = found.result(timeout=WOKEN_WITHIN_S)
    assert StageMessage.parse(message.args[0]).job.id == spec.id


def test_tokens_nobody_waits_for_stay_bounded(own_broker: FramequeueBroker) -> None:
    own_broker.declare_queue("video")
    own_broker.enqueue_many([dramatiq.Message(queue_name="video", actor_name="video", args=(str(n),), kwargs={},
                                              options={}) for n in range(WAKE_TOKENS_KEPT * 3)])

    assert own_broker.client.llen(wake_key(own_broker.namespace, "video")) == WAKE_TOKENS_KEPT


def test_the_fetch_that_empties_a_queue_drops_its_tokens_so_the_next_wait_sleeps(
    own_broker: FramequeueBroker,
) -> None:
    own_broker.declare_queue("video")
    own_broker.enqueue_many([dramatiq.Message(queue_name="video", actor_name="video", args=(str(n),), kwargs={},
                                              options={}) for n in range(3)])
    consumer = own_broker.consume("video", prefetch=8, timeout=POLL_MS)
    assert isinstance(consumer, FramequeueConsumer)

    taken = [next(consumer) for _ in range(3)]

    assert all(message is not None for message in taken)
    # The three tokens were for these messages: one left would wake the consumer for an empty fetch.
    assert own_broker.client.llen(wake_key(own_broker.namespace, "video")) == 0


def test_a_fetch_that_leaves_messages_keeps_the_tokens(own_broker: FramequeueBroker) -> None:
    own_broker.declare_queue("video")
    own_broker.enqueue_many([dramatiq.Message(queue_name="video", actor_name="video", args=(str(n),), kwargs={},
                                              options={}) for n in range(3)])
    consumer = own_broker.consume("video", prefetch=1, timeout=POLL_MS)

    assert next(consumer) is not None
    assert own_broker.client.llen(wake_key(own_broker.namespace, "video")) == 3


def test_an_idle_wait_stays_under_the_clients_read_timeout(settings: Settings) -> None:
    broker = build_broker(settings.model_copy(update={"namespace": f"wake-{uuid.uuid4().hex[:8]}"}))
    try:
        broker.client.connection_pool.connection_kwargs["socket_timeout"] = 2.0
        consumer = broker.consume("video", prefetch=2, timeout=POLL_MS)
        assert isinstance(consumer, FramequeueConsumer)
        # A wait past the read timeout would fail with redis-py's TimeoutError and restart the consumer thread.
        assert consumer._wait_ms() < 2000
    finally:
        broker.close()


def test_a_stopping_worker_wakes_its_idle_consumers(
    own_broker: FramequeueBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle consumers that would wait a minute: a worker that did not wake them would stop a minute later.
    monkeypatch.setattr(consumer_module, "IDLE_WAIT_MS", POLL_MS)
    own_broker.declare_queue("video")
    worker = dramatiq.Worker(own_broker, worker_threads=1, worker_timeout=100)
    worker.start()

    def idle(thread: dramatiq.worker.ConsumerThread) -> bool:
        consumer = thread.consumer
        return isinstance(consumer, FramequeueConsumer) and consumer._drained

    wait_for(lambda: len(worker.consumers) == 2 and all(map(idle, worker.consumers.values())), 20,
             "the worker's consumers to go idle")
    stopping = threading.Thread(target=worker.stop)
    stopping.start()

    stopping.join(timeout=WOKEN_WITHIN_S)
    assert not stopping.is_alive()


def test_a_worker_stopping_while_redis_is_away_marks_every_consumer_and_raises_nothing(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    broker = build_broker(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))  # nothing listens
    consumers = {queue: broker.consume(queue, prefetch=2, timeout=POLL_MS) for queue in ("image", "video")}
    worker = SimpleNamespace(consumers={queue: SimpleNamespace(consumer=c) for queue, c in consumers.items()})

    WakeOnShutdown().before_worker_shutdown(broker, worker)  # type: ignore[arg-type]

    assert all(isinstance(c, FramequeueConsumer) and c._stopping for c in consumers.values())
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.levelname == "WARNING"] == [
        "Could not wake the consumer of queue 'image' to stop", "Could not wake the consumer of queue 'video' to stop"]
