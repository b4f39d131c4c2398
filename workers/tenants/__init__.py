"""Tenants: the systems and people sharing one fleet, each with its own token, intake stream and Redis user."""

from workers.tenants.doors import batch_owner, claim_batch, may_see, owner, stamped
from workers.tenants.errors import (
    OverQuota,
    PriorityNotAllowed,
    RedisUsersRefused,
    TenantError,
    TenantExists,
    UnknownTenant,
)
from workers.tenants.manage import Tenants
from workers.tenants.names import intake_stream, receipt_prefix, redis_user
from workers.tenants.quotas import TenantQuotas
from workers.tenants.store import TenantStore, token_hash
from workers.tenants.tokens import TOKEN_CACHE_S, TenantTokens

__all__ = [
    "TOKEN_CACHE_S", "OverQuota", "PriorityNotAllowed", "RedisUsersRefused", "TenantError", "TenantExists",
    "TenantQuotas", "TenantStore", "TenantTokens", "Tenants", "UnknownTenant", "batch_owner", "claim_batch",
    "intake_stream", "may_see", "owner", "receipt_prefix", "redis_user", "stamped", "token_hash",
]
