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
