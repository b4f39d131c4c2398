"""API-key pools shared by every worker through Redis: rotation, quotas, cooldowns, failover.

Each key's state is a Redis hash named by the key's fingerprint, never the key:
requests, outcomes, the end of a cooldown, why it was disabled. The keys
themselves stay in the worker's memory, loaded from the environment or a
secret file. ``KeyPools`` implements the ``KeyProvider`` protocol that remote
stage backends call, so stage code never sees which key served it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import redis

from pipelines.remote.errors import KeyRejected, ProviderTimeout, ProviderUnavailable, RateLimited
from pipelines.remote.keys import FINGERPRINT_HEX_CHARS, key_fingerprint
from queue_config.remote import ProviderConfig, RemoteConfig
from workers.errors import Deferred, NoUsableKey

T = TypeVar("T")
_PICK_LUA = (Path(__file__).parent / "pick_key.lua").read_text()

#: Cooldown after a 429 that gives no Retry-After.
DEFAULT_COOLDOWN_S = 30.0
#: Cooldown after a 5xx or a timeout, doubled for each failure in a row (up to the maximum).
ERROR_BACKOFF_S = 1.0
MAX_ERROR_BACKOFF_S = 60.0
#: Why a key is disabled when an operator disabled it (the dashboard, ``framequeue keys disable``).
OPERATOR_DISABLED_REASON = "disabled by an operator"
_FINGERPRINT = re.compile(f"[0-9a-f]{{{FINGERPRINT_HEX_CHARS}}}")


@dataclass(frozen=True)
class KeyHealth:
    """What ``framequeue keys`` shows of one key: its fingerprint and counters, never the key."""

    provider: str
    fingerprint: str
    state: str
    requests: int
    successes: int
    rate_limited: int
    errors: int
    disabled_reason: str


def redis_now_ms(client: redis.Redis) -> float:
    """Redis's clock, which the pick script also reads: hosts' clocks need not agree."""
    seconds, microseconds = cast("tuple[int, int]", client.time())
    return seconds * 1000 + microseconds / 1000


def key_health(client: redis.Redis, namespace: str) -> list[KeyHealth]:
    """Every key any worker has used, by provider and fingerprint, read from Redis alone."""
    now_ms = redis_now_ms(client)
    rows = []
    for state_key in sorted(client.scan_iter(match=f"{namespace}:keys:*:*", count=500)):
        _, provider, fingerprint = str(state_key).rsplit(":", 2)
        if fingerprint == "round_robin":
            continue
        raw = cast("dict[str, str]", client.hgetall(state_key))
        cooling_s = (float(raw.get("cooldown_until_ms", 0)) - now_ms) / 1000
        spent_s = (float(raw.get("tat_ms", 0)) - now_ms) / 1000  # its own quota (GCRA), as pick_key.lua reads it
        disabled = raw.get("disabled_reason", "")
        state = "disabled" if disabled else (f"cooling down {cooling_s:.0f} s" if cooling_s > 0 else (
            f"at quota {math.ceil(spent_s)} s" if spent_s > 0 else "ok"))
        rows.append(KeyHealth(
            provider, fingerprint, state, int(raw.get("requests", 0)), int(raw.get("successes", 0)),
            int(raw.get("rate_limited", 0)), int(raw.get("errors", 0)), disabled,
        ))
    return rows


def set_key_enabled(
    client: redis.Redis, namespace: str, fingerprint: str, enabled: bool, *, reason: str = OPERATOR_DISABLED_REASON
) -> bool:
    """Enable or disable a key that workers have used, named by its fingerprint, for every worker at once.

    A disabled key is never picked (``pick_key.lua`` skips it) until it is enabled again; enabling
    also forgets its errors in a row, so its next failure backs off from the start. Only keys with
    a state hash in Redis are known: False when no provider has a key with this fingerprint.
    """
    if not _FINGERPRINT.fullmatch(fingerprint):
        return False
    found = list(client.scan_iter(match=f"{namespace}:keys:*:{fingerprint}", count=500))
    for state_key in found:
        if enabled:
            client.hdel(state_key, "disabled_reason", "disabled_at", "errors_in_a_row")
        else:
            client.hset(state_key, mapping={"disabled_reason": reason, "disabled_at": time.time()})
    return bool(found)


class KeyPool:
    """The keys of one provider."""

    def __init__(self, client: redis.Redis, namespace: str, provider: str, config: ProviderConfig, keys: list[str]):
        if not keys:
            raise NoUsableKey(f"provider {provider!r} has no keys (set {config.keys_env or config.keys_file})")
        self.client = client
        self.provider = provider
        self.strategy = config.key_strategy
        self.quota_interval_ms = 60_000 / config.key_requests_per_minute if config.key_requests_per_minute else 0
        self._keys = keys
        self.fingerprints = [key_fingerprint(key) for key in keys]
        self._prefix = f"{namespace}:keys:{provider}"
        self._pick = client.register_script(_PICK_LUA)

    def __repr__(self) -> str:
        return f"KeyPool({self.provider!r}, fingerprints={self.fingerprints})"

    def state_key(self, fingerprint: str) -> str:
        return f"{self._prefix}:{fingerprint}"

    def wait_ms(self) -> int:
        """0 if a key is usable now, else how long until one may be (a peek: nothing is counted).

        Raises:
          NoUsableKey: every key is disabled.
        """
        return self._run_pick(reserve=False)[1]

    def call(self, model: str, request: Callable[[str], T]) -> T:
        """``request(key)`` with a picked key; on 429 or a rejected key, fail over to another.

        Raises:
          Deferred: no key is usable now (the message waits, its retries untouched).
          NoUsableKey: every key is disabled.
          ProviderUnavailable, ProviderTimeout: after counting them against the key (retried).
        """
        for _ in range(2 * len(self._keys)):
            index, wait_ms = self._run_pick(reserve=True)
            if index < 0:
                raise Deferred(wait_ms, f"every {self.provider} key is at its quota or cooling down")
            fingerprint = self.fingerprints[index]
            try:
                result = request(self._keys[index])
            except RateLimited as error:
                self._cool_down(fingerprint, error.retry_after_s or DEFAULT_COOLDOWN_S, "rate_limited")
            except KeyRejected as error:
                self._disable(fingerprint, f"HTTP {error.status} from {self.provider}: {error.reason}")
            except (ProviderUnavailable, ProviderTimeout):
                errors = self.client.hincrby(self.state_key(fingerprint), "errors_in_a_row", 1)
                backoff_s = min(MAX_ERROR_BACKOFF_S, ERROR_BACKOFF_S * 2 ** (int(cast(int, errors)) - 1))
                self._cool_down(fingerprint, backoff_s, "errors")
                raise
            else:
                self.client.hset(self.state_key(fingerprint), "errors_in_a_row", 0)
                self.client.hincrby(self.state_key(fingerprint), "successes", 1)
                return result
        raise Deferred(1000, f"{self.provider} keys kept failing over")

    def _run_pick(self, *, reserve: bool) -> tuple[int, int]:
        keys = [f"{self._prefix}:round_robin", *(self.state_key(fp) for fp in self.fingerprints)]
        index, wait_ms = self._pick(keys=keys, args=[self.strategy, self.quota_interval_ms, int(reserve)])
        if index < 0 and wait_ms < 0:
            raise NoUsableKey(f"every {self.provider} key is disabled: see `framequeue keys`")
        return int(index), int(wait_ms)

    def _cool_down(self, fingerprint: str, seconds: float, counter: str) -> None:
        state = self.state_key(fingerprint)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(state, "cooldown_until_ms", int(redis_now_ms(self.client) + seconds * 1000))
        pipe.hincrby(state, counter, 1)
        pipe.execute()

    def _disable(self, fingerprint: str, reason: str) -> None:
        self.client.hset(self.state_key(fingerprint), mapping={"disabled_reason": reason, "disabled_at": time.time()})


class KeyPools:
    """Every provider's pool; the ``KeyProvider`` that remote stage backends are given."""

    def __init__(self, pools: dict[str, KeyPool]) -> None:
        self.pools = pools

    @classmethod
    def for_config(cls, client: redis.Redis, namespace: str, config: RemoteConfig) -> KeyPools:
        """A pool for every provider with keys, which catalog models may name; a provider that a stage
        route uses must have keys (else ``NoUsableKey``)."""
        routed = {route.provider for route in config.stages.values()}
        pools = {}
        for name, provider in config.providers.items():
            keys = provider.load_keys()
            if keys or name in routed:
                pools[name] = KeyPool(client, namespace, name, provider, keys)
        return cls(pools)

    def call(self, provider: str, model: str, request: Callable[[str], Any]) -> Any:
        """``request`` with a key of ``provider``'s pool (see ``KeyPool.call``).

        Raises:
            NoUsableKey: also when the provider has no keys at all.
        """
        pool = self.pools.get(provider)
        if pool is None:
            raise NoUsableKey(f"provider {provider!r} has no keys")
        return pool.call(model, request)
