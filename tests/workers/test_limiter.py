from __future__ import annotations

import uuid

import pytest
import redis

from workers.limits import RedisLimiter


@pytest.fixture
def limiter(redis_url: str) -> RedisLimiter:
    return RedisLimiter(redis.Redis.from_url(redis_url), f"limiter-test-{uuid.uuid4().hex[:8]}")


def test_a_rate_allows_its_burst_then_one_request_per_interval(limiter: RedisLimiter) -> None:
    waits = [limiter.rate_wait_ms("model", requests_per_minute=60, burst=1) for _ in range(3)]

    assert waits[:2] == [0, 0]
    assert 990 <= waits[2] <= 1000


def test_waiting_requests_that_reserve_get_successive_slots(limiter: RedisLimiter) -> None:
    limiter.rate_wait_ms("model", requests_per_minute=120, burst=0)
    waits = [limiter.rate_wait_ms("model", requests_per_minute=120, burst=0, reserve=True) for _ in range(3)]

    assert [round(wait, -2) for wait in waits] == [500, 1000, 1500]


def test_limits_are_kept_apart_by_name(limiter: RedisLimiter) -> None:
    limiter.rate_wait_ms("a", requests_per_minute=1, burst=0)
    assert limiter.rate_wait_ms("b", requests_per_minute=1, burst=0) == 0


def test_a_semaphore_admits_up_to_its_limit_and_frees_a_place_on_release(limiter: RedisLimiter) -> None:
    assert limiter.acquire_wait_ms("model", 2, "m1", lease_ms=60_000) == 0
    assert limiter.acquire_wait_ms("model", 2, "m2", lease_ms=60_000) == 0
    assert limiter.acquire_wait_ms("model", 2, "m1", lease_ms=60_000) == 0  # a holder asking again keeps its place
    assert 59_000 < limiter.acquire_wait_ms("model", 2, "m3", lease_ms=60_000) <= 60_000

    limiter.release("model", "m1")

    assert limiter.acquire_wait_ms("model", 2, "m3", lease_ms=60_000) == 0


def test_a_dead_holders_place_frees_when_its_lease_ends(limiter: RedisLimiter) -> None:
    import time

    limiter.acquire_wait_ms("model", 1, "dead", lease_ms=50)
    time.sleep(0.1)
    assert limiter.acquire_wait_ms("model", 1, "alive", lease_ms=60_000) == 0
