"""Tenant quotas (``queue_config.tenants.Quotas``), counted in Redis so they hold across every door and worker.

At the doors (the API and the intake), before a tenant's submission is accepted:

- ``submissions_per_minute``: every submission (one job, one batch file, one intake entry) counts, no burst, on a
  GCRA of its own, ``{ns}:rate:tenant:{id}:submissions``. Over it, the submission is refused.
- ``max_queued_jobs``: the tenant's unfinished jobs (waiting or running), counted by ``JobCap`` as
  ``{ns}:unfinished:quota:{id}``. A submission that would go over it is refused whole.
- ``daily_compute_s`` / ``daily_cost``: what the tenant's jobs used today (UTC), read from the usage day
  hash ``{ns}:usage:{id}:{YYYY-MM-DD}`` (its ``{stage}:{model}:wall_s`` and ``...:cost`` fields, summed).
  With ``over_quota = "refuse"`` a submission once the budget is spent is refused until the next UTC day;
  with ``"hold"`` it is accepted and its first stage waits (``TenantQuotaHolds``).

The rate and the queued cap always refuse: holding what is over them would be taking it in anyway.
``max_running_jobs`` is never a door's business: its jobs wait at their first stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import redis

from queue_config.tenants import Tenant
from workers.errors import OverCap
from workers.jobs.usage import day_key, utc_day
from workers.limits import JobCap, RedisLimiter
from workers.tenants.errors import OverQuota

_DAY_S = 86_400
#: Retry-After of a submission over the queued cap: no one can know when a job finishes (s).
QUEUED_RETRY_AFTER_S = 30


def usage_day_key(namespace: str, tenant_id: str, now_s: float) -> str:
    """The usage hash of ``tenant_id``'s UTC day at ``now_s``, which workers/jobs/usage.py writes."""
    return day_key(namespace, tenant_id, utc_day(now_s))


def seconds_to_next_day(now_s: float) -> int:
    """Whole seconds until the next UTC midnight (at least 1)."""
    return max(1, math.ceil(_DAY_S - now_s % _DAY_S))


def running_slots(tenant_id: str) -> str:
    """The name of the tenant's running-jobs semaphore (``RedisLimiter``: ``{ns}:slots:{name}``)."""
    return f"tenant:{tenant_id}:running"


class TenantQuotas:
    """Checks tenants against their quotas. ``client`` must decode responses to str.

    Parameters:
        client: The Redis of the job records (and of the usage hashes).
        namespace: The deployment's namespace.
        unfinished_key: The sorted set of every unfinished job (``JobStatusStore.active_key``).
    """

    def __init__(self, client: redis.Redis, namespace: str, unfinished_key: str) -> None:
        self.client, self.namespace = client, namespace
        self.limiter = RedisLimiter(client, namespace)
        self.job_cap = JobCap(client, unfinished_key, namespace)

    def spent_today(self, tenant_id: str, *, now_s: float | None = None) -> tuple[float, float]:
        """The tenant's worker seconds and provider cost of the UTC day at ``now_s`` (now by default)."""
        now_s = time.time() if now_s is None else now_s
        day = cast("dict[str, str]", self.client.hgetall(usage_day_key(self.namespace, tenant_id, now_s)))
        seconds = sum(float(value) for field, value in day.items() if field.endswith(":wall_s"))
        cost = sum(float(value) for field, value in day.items() if field.endswith(":cost"))
        return seconds, cost

    def over_budget(self, tenant: Tenant, *, now_s: float | None = None) -> str:
        """Why the tenant's daily budget is spent ("" when it is not, or it has none)."""
        quotas = tenant.quotas
        if quotas.daily_compute_s is None and quotas.daily_cost is None:
            return ""
        seconds, cost = self.spent_today(tenant.id, now_s=now_s)
        if quotas.daily_compute_s is not None and seconds >= quotas.daily_compute_s:
            return f"tenant {tenant.id} used {seconds:.0f} of its {quotas.daily_compute_s:g} worker seconds today (UTC)"
        if quotas.daily_cost is not None and cost >= quotas.daily_cost:
            return f"tenant {tenant.id} spent {cost:.4g} of its daily cost budget of {quotas.daily_cost:g} (UTC)"
        return ""

    def may_start(self, tenant: Tenant) -> bool:
        """Whether a job of ``tenant`` would start now rather than be held at its first stage: it is
        under its running jobs, and its daily budget is not spent where spending it holds jobs."""
        quotas = tenant.quotas
        if quotas.max_running_jobs is not None and \
                self.limiter.holders(running_slots(tenant.id)) >= quotas.max_running_jobs:
            return False
        return not (quotas.over_quota == "hold" and self.over_budget(tenant))

    @contextmanager
    def admitting(self, tenant: Tenant | None, job_ids: Sequence[str]) -> Iterator[None]:
        """Hold ``job_ids`` (one submission) against the tenant's quotas while the block accepts them.

        Raises:
            OverQuota: The submission is over the tenant's rate, its queued cap, or (``over_quota =
                "refuse"``) its daily budget; nothing of it is accepted.
        """
        if tenant is None:
            yield
            return
        quotas = tenant.quotas
        if quotas.submissions_per_minute is not None:
            wait_ms = self.limiter.rate_wait_ms(f"tenant:{tenant.id}:submissions", quotas.submissions_per_minute,
                                               burst=0)
            if wait_ms:
                retry_after_s = max(1, math.ceil(wait_ms / 1000))
                raise OverQuota(f"tenant {tenant.id} is over {quotas.submissions_per_minute:g} submissions per "
                                f"minute; retry after {retry_after_s} s", retry_after_s)
        if quotas.over_quota == "refuse":
            now_s = time.time()
            if reason := self.over_budget(tenant, now_s=now_s):
                retry_after_s = seconds_to_next_day(now_s)
                raise OverQuota(f"{reason}; retry after {retry_after_s} s (the next UTC day)", retry_after_s)
        if quotas.max_queued_jobs is None:
            yield
            return
        owner = f"quota:{tenant.id}"
        try:
            self.job_cap.take(owner, job_ids, quotas.max_queued_jobs)
        except OverCap as over:
            raise OverQuota(f"tenant {tenant.id} has {over}; wait for some to finish or cancel them",
                            QUEUED_RETRY_AFTER_S) from None
        try:
            yield
        finally:
            self.job_cap.settle(owner, job_ids)
