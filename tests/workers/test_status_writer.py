from __future__ import annotations

import threading
import uuid

import pytest
import redis

from workers.jobs.status_writer import StatusWriter


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def test_writes_before_start_go_straight_to_redis(client: redis.Redis) -> None:
    key = f"writer-test:{uuid.uuid4().hex}"
    StatusWriter(client).submit(lambda pipe: pipe.set(key, "now"))
    assert client.get(key) == "now"


def test_writes_from_many_threads_are_all_sent_in_fewer_round_trips(client: redis.Redis) -> None:
    key = f"writer-test:{uuid.uuid4().hex}"
    writer = StatusWriter(client, flush_interval_ms=20)
    pipelines_sent = 0
    send = writer._send

    def counting_send(batch, *, raise_errors):  # type: ignore[no-untyped-def]
        nonlocal pipelines_sent
        pipelines_sent += 1
        send(batch, raise_errors=raise_errors)

    writer._send = counting_send  # type: ignore[method-assign]
    writer.start()
    threads = [
        threading.Thread(target=lambda: [writer.submit(lambda pipe: pipe.incr(key)) for _ in range(50)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.stop()

    assert client.get(key) == "400"
    assert pipelines_sent < 40


def test_a_waited_write_is_in_redis_on_return_and_after_earlier_writes(client: redis.Redis) -> None:
    key = f"writer-test:{uuid.uuid4().hex}"
    writer = StatusWriter(client, flush_interval_ms=50)
    writer.start()
    try:
        writer.submit(lambda pipe: pipe.rpush(key, "progress"))
        writer.submit(lambda pipe: pipe.rpush(key, "final"), wait=True)
        assert client.lrange(key, 0, -1) == ["progress", "final"]
    finally:
        writer.stop()


def test_a_waited_write_that_redis_refuses_raises(client: redis.Redis) -> None:
    key = f"writer-test:{uuid.uuid4().hex}"
    client.set(key, "not a list")
    writer = StatusWriter(client)
    writer.start()
    try:
        with pytest.raises(redis.ResponseError):
            writer.submit(lambda pipe: pipe.rpush(key, "x"), wait=True)
    finally:
        writer.stop()


def test_a_waited_write_is_sent_at_once_with_what_has_gathered(client: redis.Redis) -> None:
    key = f"writer-test:{uuid.uuid4().hex}"
    writer = StatusWriter(client, flush_interval_ms=600_000)  # gathering alone would hold writes for 10 minutes
    writer.start()
    try:
        writer.submit(lambda pipe: pipe.rpush(key, "progress"))
        waiter = threading.Thread(target=lambda: writer.submit(lambda pipe: pipe.rpush(key, "final"), wait=True))
        waiter.start()
        waiter.join(timeout=60)
        assert not waiter.is_alive(), "the waited write sat out the gathering time"
        assert client.lrange(key, 0, -1) == ["progress", "final"]
    finally:
        writer.stop()


def test_scripts_go_by_hash_unasked_and_are_loaded_again_when_redis_lost_them(restartable_redis) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(restartable_redis.url, decode_responses=True)
    script = client.register_script("return redis.call('RPUSH', KEYS[1], ARGV[1])")
    writer = StatusWriter(client, flush_interval_ms=600_000)
    writer.start()
    try:
        writer.submit(lambda pipe: script(keys=["scripted"], args=["first"], client=pipe), wait=True)
        client.script_flush()  # as a restart leaves it: the data kept, no script known
        writer.submit(lambda pipe: pipe.incr("plain"))
        writer.submit(lambda pipe: script(keys=["scripted"], args=["second"], client=pipe), wait=True)
    finally:
        writer.stop()

    assert client.lrange("scripted", 0, -1) == ["first", "second"]
    assert client.get("plain") == "1"  # what ran the first time is not sent again
    assert "cmdstat_script|exists" not in client.info("commandstats")


def test_a_write_that_raises_fails_alone_and_the_writer_goes_on(client: redis.Redis) -> None:
    """A write function that raises (a value it cannot encode) adds none of its commands and fails only its
    own submitter: the writes batched with it are sent, and the writer's thread lives for the next ones."""
    key = f"writer-test:{uuid.uuid4().hex}"
    writer = StatusWriter(client, flush_interval_ms=600_000)
    writer.start()

    def half_then_raise(pipe: redis.client.Pipeline) -> None:
        pipe.rpush(key, "half of a broken write")
        raise TypeError("Object of type bytes is not JSON serializable")

    outcomes: dict[str, BaseException | None] = {}

    def submit(name: str, write, *, wait: bool) -> None:  # type: ignore[no-untyped-def]
        try:
            writer.submit(write, wait=wait)
            outcomes[name] = None
        except Exception as error:
            outcomes[name] = error

    try:
        writer.submit(lambda pipe: pipe.rpush(key, "before"))
        broken = threading.Thread(target=submit, args=("broken", half_then_raise), kwargs={"wait": True})
        broken.start()
        broken.join(timeout=60)
        later = threading.Thread(target=submit, args=("later", lambda pipe: pipe.rpush(key, "after")),
                                 kwargs={"wait": True})
        later.start()
        later.join(timeout=60)
        assert not broken.is_alive() and not later.is_alive(), "a waited write never came back"
    finally:
        writer.stop()

    assert isinstance(outcomes["broken"], TypeError)
    assert outcomes["later"] is None
    assert client.lrange(key, 0, -1) == ["before", "after"]
