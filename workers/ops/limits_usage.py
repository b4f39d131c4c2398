"""Each limit and quota, used against configured: model limits, key pools, the API's bounds per token.

Read from the keys the limiters keep (see ``workers/limits`` and ``workers/keys``), one pipelined
round trip for all of them; nothing is counted or booked by reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from queue_config.remote import RemoteConfig
from queue_config.settings import Settings
from workers.jobs.record import JobStatusStore
from workers.keys.pool import KeyHealth, key_health, redis_now_ms
from workers.limits import JobCap


@dataclass(frozen=True)
class LimitUsage:
    """One limit: what it bounds, how much of it is taken now, how much is configured."""

    kind: str
    name: str
    used: float
    configured: float
    unit: str

    @property
    def full(self) -> bool:
        return self.used >= self.configured


def limits_usage(status: JobStatusStore, settings: Settings, config: RemoteConfig, api_owner: str,
                 keys: list[KeyHealth] | None = None) -> list[LimitUsage]:
    """Every configured limit with its use now; ``api_owner`` is the fingerprint the API counts its token under.

    ``keys``: the pools' keys as ``key_health`` read them, when the caller has them already.

    A rate's use is the requests booked ahead of now (its GCRA's theoretical arrival time, in
    requests): at the configured rate, that many wait before the next one may go. A key pool's
    use is its keys no request can take now: every one of them taken means its stages wait.
    """
    ns, client = status.namespace, status.client
    now_ms = redis_now_ms(client)
    rates = [(f"{limit.provider}:{limit.model}", limit.requests_per_minute) for limit in config.limits
             if limit.requests_per_minute]
    rates.append((f"api:{api_owner}", settings.api_requests_per_minute))
    slots = [(f"{limit.provider}:{limit.model}", limit.concurrency) for limit in config.limits if limit.concurrency]
    keys = key_health(client, ns) if keys is None else keys
    pipe = client.pipeline(transaction=False)
    for name, _ in rates:
        pipe.get(f"{ns}:rate:{name}")
    for name, _ in slots:
        pipe.zcount(f"{ns}:slots:{name}", f"({now_ms}", "+inf")
    cap = settings.api_max_queued_jobs
    pipe.execute_command("ZINTERCARD", 2, JobCap(client, status.active_key, ns).owner_key(api_owner),
                         status.active_key, "LIMIT", cap + 1)
    replies = iter(pipe.execute())
    found = []
    for name, per_minute in rates:
        tat_ms = float(cast("str | None", next(replies)) or 0)
        booked = max(0.0, tat_ms - now_ms) / (60_000 / per_minute)
        found.append(LimitUsage("rate", name, round(booked, 1), per_minute, "requests/min"))
    found.extend(LimitUsage("concurrency", name, next(replies), limit, "at once") for name, limit in slots)
    out_of_use: dict[str, list[int]] = {}
    for key in keys:
        counts = out_of_use.setdefault(key.provider, [0, 0])
        counts[0] += key.state != "ok"
        counts[1] += 1
    found.extend(LimitUsage("keys disabled, cooling or at quota", provider, out, total, "keys")
                 for provider, (out, total) in out_of_use.items())
    found.append(LimitUsage("unfinished jobs", "API token", next(replies), cap, "jobs"))
    return found
