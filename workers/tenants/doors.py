"""What every door does with a job's tenant: sets it from the credentials and holds the job to its allowance.

The tenant a job carries is the one its credentials name (an API token, or the intake stream it
was written to), whatever the client wrote in the job; the operator's jobs carry none
(``OPERATOR_TENANT`` in their records). A tenant's job may claim at most its ``max_priority``.
A tenant sees its own jobs and batches only: another's answer as if they did not exist.
"""

from __future__ import annotations

from typing import cast

from queue_config.jobs import JobSpec
from queue_config.tenants import OPERATOR_TENANT, Tenant
from workers.jobs.record import JobStatusStore
from workers.tenants.errors import PriorityNotAllowed


def owner(tenant: Tenant | None) -> str:
    """The tenant id that records name: the tenant's, or ``OPERATOR_TENANT``."""
    return tenant.id if tenant is not None else OPERATOR_TENANT


def stamped(spec: JobSpec, tenant: Tenant | None) -> JobSpec:
    """The job as ``tenant``'s (None: the operator's), whatever tenant it named.

    Raises:
        PriorityNotAllowed: The job asks for more than the tenant's ``max_priority`` (the reason says so).
    """
    if tenant is not None and not tenant.allows(spec.priority):
        raise PriorityNotAllowed(f"priority {spec.priority.value} is above what tenant {tenant.id} may claim "
                                 f"({tenant.max_priority.value}); ask for {tenant.max_priority.value}")
    return spec.model_copy(update={"tenant": tenant.id if tenant is not None else None})


def may_see(tenant: Tenant | None, job_or_batch_owner: str | None) -> bool:
    """Whether the caller may see what ``job_or_batch_owner`` owns (the operator sees everything)."""
    return tenant is None or job_or_batch_owner == tenant.id


def batch_owner(status: JobStatusStore, batch_id: str) -> str | None:
    """The tenant that submitted the batch; None when there is no such batch."""
    submitted, tenant = cast("list[str | None]", status.client.hmget(status.batch_key(batch_id), "id", "tenant"))
    return (tenant or OPERATOR_TENANT) if submitted or tenant else None


def claim_batch(status: JobStatusStore, batch_id: str, tenant: Tenant | None) -> bool:
    """Name the caller as the owner of a new batch id; whether the id is the caller's (new, or its own)."""
    found = batch_owner(status, batch_id)
    if found is None:
        status.client.hsetnx(status.batch_key(batch_id), "tenant", owner(tenant))
        found = batch_owner(status, batch_id)
    return found == owner(tenant)
