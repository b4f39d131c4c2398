"""The key pool against a real Redis and the provider simulator, in-process."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import redis

from pipelines.remote import (
    KeyConfig,
    OpenAICompatibleClient,
    ProviderSimulator,
    ProviderTimeout,
    ProviderUnavailable,
    key_fingerprint,
)
from queue_config.remote import ProviderConfig
from tests.servers import wait_for
from workers.errors import Deferred, NoUsableKey
from workers.keys import KeyPool, key_health, set_key_enabled
from workers.keys.pool import ERROR_BACKOFF_S, MAX_ERROR_BACKOFF_S, redis_now_ms


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def simulator() -> Iterator[ProviderSimulator]:
    keys = {"key-a": KeyConfig(requests_per_minute=1), "key-b": KeyConfig(requests_per_minute=100)}
    with ProviderSimulator(keys) as sim:
        yield sim


def pool_of(client: redis.Redis, keys: list[str], **config: object) -> tuple[KeyPool, str]:
    namespace = f"pool-test-{uuid.uuid4().hex[:8]}"
    provider = ProviderConfig(kind="openai", base_url="http://unused", **config)  # type: ignore[arg-type]
    return KeyPool(client, namespace, "sim", provider, keys), namespace


def render(simulator: ProviderSimulator, pool: KeyPool) -> None:
    api = OpenAICompatibleClient(simulator.base_url, timeout_s=10)
    pool.call("sim-image", lambda key: api.generate_image(
        key=key, model="sim-image", prompt="a fox", width=64, height=64, seed=1, steps=1, negative_prompt=None))


def test_a_429_cools_the_key_down_and_the_same_call_fails_over(client, simulator) -> None:
    pool, namespace = pool_of(client, ["key-a", "key-b"])
    render(simulator, pool)  # key-a spends its one request a minute
    render(simulator, pool)  # round robin: key-b
    render(simulator, pool)  # key-a answers 429: the call goes on with key-b

    health = {row.fingerprint: row for row in key_health(client, namespace)}
    assert health[key_fingerprint("key-a")].rate_limited == 1
    assert health[key_fingerprint("key-a")].state.startswith("cooling down")
    assert health[key_fingerprint("key-b")].successes == 2
    assert simulator.stats()[key_fingerprint("key-b")]["accepted"] == 2


def test_a_revoked_key_is_disabled_with_its_reason_and_the_others_serve(client, simulator) -> None:
    pool, namespace = pool_of(client, ["key-b", "key-a"])
    simulator.revoke("key-b")

    render(simulator, pool)

    health = {row.fingerprint: row for row in key_health(client, namespace)}
    assert health[key_fingerprint("key-b")].state == "disabled"
    assert "HTTP 401" in health[key_fingerprint("key-b")].disabled_reason
    assert health[key_fingerprint("key-a")].successes == 1


def test_an_operator_disables_and_re_enables_a_key_by_its_fingerprint(client, simulator) -> None:
    pool, namespace = pool_of(client, ["key-b"])
    render(simulator, pool)
    fingerprint = key_fingerprint("key-b")

    assert set_key_enabled(client, namespace, fingerprint, False)
    with pytest.raises(NoUsableKey):
        render(simulator, pool)
    assert next(iter(key_health(client, namespace))).state == "disabled"

    assert set_key_enabled(client, namespace, fingerprint, True)
    render(simulator, pool)
    assert next(iter(key_health(client, namespace))).state == "ok"
    assert simulator.stats()[fingerprint]["accepted"] == 2
    assert not set_key_enabled(client, namespace, key_fingerprint("never-used"), True)
    assert not set_key_enabled(client, namespace, "*", True)


def test_keys_at_their_quota_defer_the_call_for_as_long_as_they_need(client, simulator) -> None:
    pool, namespace = pool_of(client, ["key-b"], key_requests_per_minute=6)
    render(simulator, pool)
    assert re.fullmatch(r"at quota (9|10) s", next(iter(key_health(client, namespace))).state)

    with pytest.raises(Deferred) as deferred:
        render(simulator, pool)

    assert 9_000 <= deferred.value.delay_ms <= 10_000
    assert 9_000 <= pool.wait_ms() <= 10_000


def test_when_every_key_is_disabled_the_pool_says_so(client, simulator) -> None:
    pool, _ = pool_of(client, ["key-b"])
    simulator.revoke("key-b")

    with pytest.raises(NoUsableKey):
        render(simulator, pool)
    with pytest.raises(NoUsableKey, match="every sim key is disabled"):
        pool.wait_ms()


def test_least_used_picks_the_key_with_the_most_quota_left(client, simulator) -> None:
    pool, namespace = pool_of(client, ["key-b", "key-a"], key_strategy="least_used", key_requests_per_minute=60)
    render(simulator, pool)
    render(simulator, pool)

    requests = {row.fingerprint: row.requests for row in key_health(client, namespace)}
    assert requests == {key_fingerprint("key-b"): 1, key_fingerprint("key-a"): 1}


def test_a_pool_never_shows_its_keys(client) -> None:
    pool, _ = pool_of(client, ["sk-secret-value-123"])
    assert "sk-secret-value-123" not in repr(pool)
    with pytest.raises(NoUsableKey) as missing:
        pool_of(client, [], keys_env="FRAMEQUEUE_KEYS_NONE")
    assert "FRAMEQUEUE_KEYS_NONE" in str(missing.value)


def test_5xx_and_timeouts_in_a_row_double_the_keys_backoff_up_to_its_cap_and_a_success_resets_it(
    client, simulator
) -> None:
    pool, _ = pool_of(client, ["key-b"])
    state = pool.state_key(key_fingerprint("key-b"))
    impatient = OpenAICompatibleClient(simulator.base_url, timeout_s=0.2)

    def time_out(key: str) -> object:
        answered = simulator.stats().get(key_fingerprint(key), {}).get("accepted", 0)
        simulator.set_latency(600)
        try:
            return impatient.generate_image(key=key, model="sim-image", prompt="a fox", width=64, height=64,
                                            seed=1, steps=1, negative_prompt=None)
        finally:
            simulator.set_latency(0)
            # The simulator still answers it: wait, so that it cannot take the next call's 503.
            wait_for(lambda: simulator.stats()[key_fingerprint(key)]["accepted"] > answered, 30, "the late answer")

    def backoff_s(failure: str) -> tuple[float, float]:
        """Fail one call with ``failure``; the bounds of the key's cooldown, read back from Redis."""
        client.hdel(state, "cooldown_until_ms")  # as if the last cooldown had run out
        before_ms = redis_now_ms(client)
        if failure == "503":
            simulator.start_fault_burst(1, status=503)
            with pytest.raises(ProviderUnavailable):
                render(simulator, pool)
        else:
            with pytest.raises(ProviderTimeout):
                pool.call("sim-image", time_out)
        after_ms = redis_now_ms(client)
        until_ms = float(client.hget(state, "cooldown_until_ms"))  # whole ms, rounded down
        assert 0 < pool.wait_ms() <= until_ms - before_ms + 1  # the pick skips the key while it cools down
        return (until_ms - after_ms) / 1000, (until_ms + 1 - before_ms) / 1000

    failures = ["503", "503", "timeout", "503", "timeout", "503", "503", "503"]
    expected_s = [1, 2, 4, 8, 16, 32, MAX_ERROR_BACKOFF_S, MAX_ERROR_BACKOFF_S]
    for failure, backoff in zip(failures, expected_s, strict=True):
        low_s, high_s = backoff_s(failure)
        assert low_s <= backoff <= high_s, (failure, backoff, low_s, high_s)

    client.hdel(state, "cooldown_until_ms")
    render(simulator, pool)
    low_s, high_s = backoff_s("503")
    assert low_s <= ERROR_BACKOFF_S <= high_s
    assert int(client.hget(state, "errors")) == len(failures) + 1
