"""What managing tenants can run into; each message is one line a person can act on."""

from __future__ import annotations

from workers.errors import FramequeueError


class TenantError(FramequeueError):
    """Root of the tenant errors."""


class UnknownTenant(TenantError):
    """No tenant has this id."""


class TenantExists(TenantError):
    """A tenant with this id exists already (or the id is reserved)."""


class RedisUsersRefused(TenantError):
    """This Redis will not make or change a tenant's ACL user (no ACL commands, or no read-only key patterns)."""


class PriorityNotAllowed(TenantError):
    """A job asks for a higher priority than its tenant may claim."""


class OverQuota(TenantError):
    """A tenant is over one of its quotas; ``retry_after_s`` says when asking again may succeed (whole s, >= 1).

    Its message starts ``quota:`` (what receipts and wait reasons show).
    """

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(f"quota: {reason}")
        self.retry_after_s = max(1, retry_after_s)
