"""Rate and concurrency limits shared by every worker through Redis, one round trip per check."""

from __future__ import annotations

import time
from pathlib import Path

import redis

_LUA = Path(__file__).parent


class RedisLimiter:
    """Checks named limits: requests per minute (GCRA) and concurrent holders (leased semaphore)."""

    def __init__(self, client: redis.Redis, namespace: str = "framequeue") -> None:
        self.client = client
        self.namespace = namespace
        self._gcra = client.register_script((_LUA / "gcra.lua").read_text())
        self._acquire = client.register_script((_LUA / "semaphore.lua").read_text())

    def rate_wait_ms(self, name: str, requests_per_minute: float, burst: int = 1, *, reserve: bool = False) -> int:
        """0 if a request under ``name`` may go now (and it is counted), else the ms to wait.

        With ``reserve``, a request that must wait books the slot it waits for.
        """
        interval_ms = 60_000 / requests_per_minute
        args = [interval_ms, burst, int(reserve)]
        return int(self._gcra(keys=[f"{self.namespace}:rate:{name}"], args=args))

    def acquire_wait_ms(self, name: str, limit: int, holder: str, lease_ms: int) -> int:
        """0 if ``holder`` got one of ``limit`` places under ``name``, else the ms until one may free."""
        return int(self._acquire(keys=[self._slots(name)], args=[limit, lease_ms, holder]))

    def holders(self, name: str) -> int:
        """How many hold a place of semaphore ``name`` now (leases not yet run out)."""
        return int(self.client.zcount(self._slots(name), f"({int(time.time() * 1000)}", "+inf"))

    def release(self, name: str, holder: str) -> None:
        self.client.zrem(self._slots(name), holder)

    def _slots(self, name: str) -> str:
        return f"{self.namespace}:slots:{name}"
