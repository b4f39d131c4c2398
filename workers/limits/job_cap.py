"""A cap on each owner's unfinished jobs (an API token's, say), shared through Redis.

An owner's job ids are a sorted set, ``{namespace}:unfinished:{owner}``; an id counts against the
cap while the job is unfinished, which the set of every unfinished job already says
(``JobStatusStore.active_key``: acceptance adds a job, its final state removes it). So nothing
counts down when a job finishes, and no count can drift: the owner's finished ids are dropped
(by set intersection, inside the one script of a take: ``job_cap.lua``) only when a take would not
fit otherwise, so a take costs O(its ids) below the cap and O(cap) at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import redis

from workers.errors import OverCap

#: How long a new id counts although its job is not yet accepted (an upload of 10,000 lines takes about 1 s).
HOLD_MS = 60_000
#: An owner's set expires this long after its last take.
OWNER_TTL_MS = 7 * 24 * 3600 * 1000

_LUA = (Path(__file__).parent / "job_cap.lua").read_text()


class JobCap:
    """Counts each owner's unfinished jobs against a cap, one Redis round trip per take.

    Parameters:
        client: The Redis that holds the job records.
        unfinished_key: The sorted set of every unfinished job id (``JobStatusStore.active_key``).
        namespace: Prefix of the owners' sets.
        hold_ms: How long a taken id counts before its job is in ``unfinished_key``.
        ttl_ms: How long an owner's set outlives its last take.
    """

    def __init__(self, client: redis.Redis, unfinished_key: str, namespace: str = "framequeue", *,
                 hold_ms: int = HOLD_MS, ttl_ms: int = OWNER_TTL_MS) -> None:
        self.client, self.unfinished_key, self.namespace = client, unfinished_key, namespace
        self.hold_ms, self.ttl_ms = hold_ms, ttl_ms
        self._take = client.register_script(_LUA)

    def owner_key(self, owner: str) -> str:
        return f"{self.namespace}:unfinished:{owner}"

    def take(self, owner: str, job_ids: Sequence[str], cap: int) -> int:
        """Count ``job_ids`` (held for ``hold_ms``) against ``owner``'s cap; returns the owner's count with them.

        Raises:
            OverCap: When they would put the owner over ``cap``; then none of them is counted.
        """
        ids = list(dict.fromkeys(job_ids))
        if len(ids) > cap:  # refused without sending them all to Redis
            raise OverCap(len(ids), 0, cap)
        key = self.owner_key(owner)
        taken, count, new = self._take(keys=[key, self.unfinished_key, f"{key}:scratch"],
                                       args=[cap, self.hold_ms, self.ttl_ms, *ids])
        if not taken:
            raise OverCap(int(new), int(count), cap)
        return int(count)

    def settle(self, owner: str, job_ids: Sequence[str]) -> None:
        """The jobs' acceptance is over: each counts from now on only while it is unfinished."""
        if job_ids:
            self.client.zadd(self.owner_key(owner), dict.fromkeys(job_ids, 0), xx=True)
