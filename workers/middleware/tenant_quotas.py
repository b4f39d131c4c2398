"""Tenant quotas at the workers: running jobs, and a spent daily budget that holds (rather than refuses).

A tenant's job counts as running from the start of its first stage to its final state: it holds a place
in the tenant's leased semaphore (``RedisLimiter``, ``{ns}:slots:tenant:{id}:running``, shared by every
worker on every host), its job id the holder. The first stage takes the place, or is put back to wait
while the tenant already has ``max_running_jobs`` running; each later stage renews the lease; the place
is given back once the job's record is final (succeeded, failed, blocked, cancelled), or when a lease
runs out (a worker that died mid-job).

A tenant whose quotas say ``over_quota = "hold"`` has its jobs accepted once its daily budget is spent
(``workers/tenants/quotas.py``); their first stage waits here until the next UTC day (or a raised budget).

A message that waits is put back with a delay: no retry burned, nothing lost. Its wait reason, which
starts ``quota:``, is the job's (``framequeue jobs`` and the dashboard show it). Jobs of the operator
(no tenant) are never held. Put this middleware ahead of the job-status middleware: a message put back
here is not counted as an attempt, and its after-hooks run once the job-status middleware has recorded
a final state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from queue_config.jobs import JobKind
from queue_config.stages import stage_of_actor, stage_plan
from queue_config.tenants import OPERATOR_TENANT, Tenant
from workers.jobs.messages import job_named_by
from workers.jobs.record import TERMINAL_STATES, JobStatusStore
from workers.middleware.job_status import JobStatusMiddleware
from workers.middleware.put_back import put_back
from workers.tenants.quotas import TenantQuotas, running_slots, seconds_to_next_day
from workers.tenants.store import TenantStore

#: How long a running job keeps its place without a stage starting (a worker that died mid-job).
DEFAULT_RUNNING_LEASE_MS = 60 * 60_000
#: How long a first stage over ``max_running_jobs`` waits before it asks again.
DEFAULT_RUNNING_WAIT_MS = 500
#: How long a first stage held for a spent daily budget waits before it looks again (a budget may be raised).
DEFAULT_BUDGET_WAIT_MS = 60_000
#: How long a tenant's settings are trusted without reading them again (s).
DEFAULT_TENANT_CACHE_S = 2.0


class TenantQuotaHolds(Middleware):
    """Holds tenants' first stages to ``max_running_jobs`` and (``over_quota = "hold"``) their daily budget.

    Parameters:
        quotas: Counts the tenants' usage and holds their running slots.
        status: The job records (a place is given back once its job's record is final).
        tenant_of: The tenant with an id (None for one that no longer exists).
        running_lease_ms: How long a running job keeps its place without a stage starting.
        running_wait_ms: How long a message over ``max_running_jobs`` waits before it asks again.
        budget_wait_ms: How long a message held for a spent budget waits before it looks again.
        tenant_cache_s: How long a tenant's settings are trusted.
    """

    def __init__(
        self,
        quotas: TenantQuotas,
        status: JobStatusStore,
        tenant_of: Callable[[str], Tenant | None],
        *,
        running_lease_ms: int = DEFAULT_RUNNING_LEASE_MS,
        running_wait_ms: int = DEFAULT_RUNNING_WAIT_MS,
        budget_wait_ms: int = DEFAULT_BUDGET_WAIT_MS,
        tenant_cache_s: float = DEFAULT_TENANT_CACHE_S,
    ) -> None:
        self.quotas, self.status, self.tenant_of = quotas, status, tenant_of
        self.running_lease_ms, self.running_wait_ms = running_lease_ms, running_wait_ms
        self.budget_wait_ms = budget_wait_ms
        self.tenant_cache_s = tenant_cache_s
        self._tenants: dict[str, tuple[Tenant | None, float]] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        found = self._job_and_tenant(message)
        if found is None:
            return
        job, tenant = found
        quotas, job_id = tenant.quotas, job["id"]
        try:
            first = stage_plan(JobKind(job.get("kind", "image"))).index(stage_of_actor(message.actor_name)) == 0
        except ValueError:
            return
        if first and quotas.over_quota == "hold" and (reason := self.quotas.over_budget(tenant)):
            self.quotas.limiter.release(running_slots(tenant.id), job_id)  # a retried first stage held one
            delay_ms = min(self.budget_wait_ms, seconds_to_next_day(time.time()) * 1000)
            put_back(broker, message, delay_ms, f"quota: {reason}")
        if quotas.max_running_jobs is None:
            return
        wait_ms = self.quotas.limiter.acquire_wait_ms(running_slots(tenant.id), quotas.max_running_jobs, job_id,
                                                      self.running_lease_ms)
        if wait_ms and first:
            put_back(broker, message, min(wait_ms, self.running_wait_ms),
                     f"quota: tenant {tenant.id} has {quotas.max_running_jobs} jobs running")
        # A later stage goes whatever the answer: its job is running already (a lapsed lease is not renewed).

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None, exception: Any = None
    ) -> None:
        self._release_if_finished(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._release_if_finished(message)

    def _release_if_finished(self, message: MessageProxy) -> None:
        found = self._job_and_tenant(message)
        if found is None or found[1].quotas.max_running_jobs is None:
            return
        job_id = found[0]["id"]
        if message.failed or self.status.state_of(job_id) in TERMINAL_STATES:
            self.quotas.limiter.release(running_slots(found[1].id), job_id)

    def _job_and_tenant(self, message: MessageProxy) -> tuple[dict[str, Any], Tenant] | None:
        """The message's job and its tenant, when the job is a tenant's that has quotas to hold it to."""
        job = job_named_by(message.args)
        tenant_id = job.get("tenant") if job else None
        if job is None or not isinstance(tenant_id, str) or tenant_id in ("", OPERATOR_TENANT):
            return None
        tenant = self._tenant(tenant_id)
        return (job, tenant) if tenant is not None else None

    def _tenant(self, tenant_id: str) -> Tenant | None:
        now = time.monotonic()
        with self._lock:
            cached = self._tenants.get(tenant_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        tenant = self.tenant_of(tenant_id)
        with self._lock:
            self._tenants[tenant_id] = (tenant, now + self.tenant_cache_s)
        return tenant


def add_quota_middleware(broker: dramatiq.Broker, status: JobStatusStore) -> None:
    """Hold tenants to their quotas, ahead of the job-status middleware (see the module's docstring)."""
    quotas = TenantQuotas(status.client, status.namespace, status.active_key)
    tenants = TenantStore(status.client, status.namespace)
    broker.add_middleware(TenantQuotaHolds(quotas, status, tenants.get), before=JobStatusMiddleware)
