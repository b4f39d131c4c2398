"""Tenants: the systems and people that share one fleet, each with its own token, allowance and quotas.

A tenant's token opens the HTTP API for that tenant alone (the operator token, ``FRAMEQUEUE_API_TOKEN``,
sits above every tenant); its Redis user may only add to the tenant's own intake stream and read its
receipts. Every job a tenant submits carries the tenant's id, and the doors hold the tenant to what
this record allows. Tokens are kept as their SHA-256 only: a token is 32 random bytes, so a hash
cannot be reversed by guessing, and a leaked record leaks no token.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from queue_config.jobs import Priority

#: A tenant id: short, lower case, safe in Redis key names, ACL user names and URLs.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
#: The tenant of jobs that came in with the operator token (or before tenants existed).
OPERATOR_TENANT = "operator"


class Quotas(BaseModel):
    """What one tenant may take of the fleet. None: no limit beyond the deployment's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    submissions_per_minute: float | None = Field(default=None, gt=0)
    #: Jobs accepted and not yet started, and jobs running, at any one time.
    max_queued_jobs: int | None = Field(default=None, ge=1)
    max_running_jobs: int | None = Field(default=None, ge=1)
    #: Worker seconds per UTC day, all stages together, and provider cost per day (catalog costs).
    daily_compute_s: float | None = Field(default=None, gt=0)
    daily_cost: float | None = Field(default=None, gt=0)
    #: Over a quota: ``refuse`` answers 429 (or a ``rejected: quota`` receipt); ``hold`` accepts the
    #: job and keeps it waiting until the quota frees.
    over_quota: Literal["refuse", "hold"] = "refuse"


class Tenant(BaseModel):
    """One tenant's settings (its token's hash is kept beside it, never in it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: TenantId
    description: str = Field(default="", max_length=200)
    enabled: bool = True
    #: Its share of the workers against other tenants' in the same priority class (fair share).
    weight: float = Field(default=1.0, gt=0, le=1000)
    #: The highest priority its jobs may claim; a job asking for more is refused at the door.
    max_priority: Priority = Priority.interactive
    quotas: Quotas = Quotas()

    def allows(self, priority: Priority) -> bool:
        order = (Priority.batch, Priority.interactive)
        return order.index(priority) <= order.index(self.max_priority)
