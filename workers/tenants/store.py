"""Tenants and their tokens in Redis; a token is kept as its SHA-256 only.

``{namespace}:tenants`` maps each tenant id to its settings (``Tenant`` as JSON),
``{namespace}:tenant_tokens`` maps the SHA-256 (hex) of each tenant's API token to the tenant's id,
and ``{namespace}:tenant_redis_users`` lists the tenants that have a Redis ACL user (all of them,
unless one was added with no Redis user for a Redis that allows none). A token is 32 random bytes
(``secrets.token_urlsafe``), shown once when it is made; nothing here can give it back.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final, cast

import redis

from queue_config.tenants import Tenant
from workers.tenants.errors import UnknownTenant

#: Random bytes in a tenant's API token (256 bits).
TOKEN_BYTES: Final = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """The token's SHA-256 in hex: what is stored, and the form Redis ACL takes a password in (``#<hash>``)."""
    return hashlib.sha256(token.encode()).hexdigest()


class TenantStore:
    """Reads and writes tenants. ``client`` must decode responses to str."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self.tenants_key = f"{namespace}:tenants"
        self.tokens_key = f"{namespace}:tenant_tokens"
        self.redis_users_key = f"{namespace}:tenant_redis_users"

    def add(self, tenant: Tenant, hashed_token: str, *, redis_user: bool) -> bool:
        """Store a new tenant with its token's hash; False (and nothing changes) if the id is taken."""
        if not self.client.hsetnx(self.tenants_key, tenant.id, tenant.model_dump_json()):
            return False
        with self.client.pipeline() as pipe:
            pipe.hset(self.tokens_key, hashed_token, tenant.id)
            if redis_user:
                pipe.sadd(self.redis_users_key, tenant.id)
            pipe.execute()
        return True

    def get(self, tenant_id: str) -> Tenant | None:
        raw = cast("str | None", self.client.hget(self.tenants_key, tenant_id))
        return Tenant.model_validate_json(raw) if raw else None

    def require(self, tenant_id: str) -> Tenant:
        tenant = self.get(tenant_id)
        if tenant is None:
            raise UnknownTenant(f"no tenant {tenant_id} (see framequeue tenants list)")
        return tenant

    def all(self) -> list[Tenant]:
        """Every tenant, by id."""
        raw = cast("dict[str, str]", self.client.hgetall(self.tenants_key))
        return [Tenant.model_validate_json(raw[tenant_id]) for tenant_id in sorted(raw)]

    def put(self, tenant: Tenant) -> None:
        """Replace an existing tenant's settings."""
        self.client.hset(self.tenants_key, tenant.id, tenant.model_dump_json())

    def has_redis_user(self, tenant_id: str) -> bool:
        return bool(self.client.sismember(self.redis_users_key, tenant_id))

    def hash_of(self, tenant_id: str) -> str | None:
        """The hash of the tenant's current token (one scan of the tokens: tenants are few)."""
        tokens = cast("dict[str, str]", self.client.hgetall(self.tokens_key))
        return next((hashed for hashed, owner in tokens.items() if owner == tenant_id), None)

    def replace_token(self, tenant_id: str, hashed_token: str) -> None:
        """The tenant's token becomes the one of ``hashed_token``; the old one opens nothing from now on."""
        old = self.hash_of(tenant_id)
        with self.client.pipeline() as pipe:  # MULTI/EXEC: never two tokens, never none
            if old:
                pipe.hdel(self.tokens_key, old)
            pipe.hset(self.tokens_key, hashed_token, tenant_id)
            pipe.execute()

    def by_token(self, token: str) -> Tenant | None:
        """The enabled tenant whose token this is, or None."""
        tenant_id = cast("str | None", self.client.hget(self.tokens_key, token_hash(token)))
        tenant = self.get(tenant_id) if tenant_id else None
        return tenant if tenant is not None and tenant.enabled else None
