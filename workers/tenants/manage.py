"""Adding, disabling, enabling and re-keying tenants: the store and the Redis users moved together.

Each change holds ``{namespace}:tenants:lock`` while it reads the store and sets the Redis user, so
that two changes (a rotation, and the intake putting users back after a Redis restart) never leave
a user with an older password than the store's. What must stop at once stops at once: disabling
a tenant refuses its token at the next lookup and turns its Redis user off, closing every connection
it had open; a new token replaces the old one at Redis first (and closes the old one's connections),
then in the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from dramatiq.logging import get_logger

from queue_config.tenants import Tenant
from workers.tenants.errors import TenantExists
from workers.tenants.names import RESERVED_TENANT_IDS
from workers.tenants.redis_users import RedisUsers
from workers.tenants.store import TenantStore, new_token, token_hash

#: Longest a change may hold the lock (a change is a few commands).
LOCK_TIMEOUT_S = 10


class Tenants:
    """The tenants of one namespace. ``client`` must decode responses to str."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.logger = get_logger(__name__, type(self))
        self.client, self.namespace = client, namespace
        self.store = TenantStore(client, namespace)
        self.users = RedisUsers(client, namespace)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self.client.lock(f"{self.namespace}:tenants:lock", timeout=LOCK_TIMEOUT_S,
                              blocking_timeout=LOCK_TIMEOUT_S):
            yield

    def add(self, tenant: Tenant, *, redis_user: bool = True) -> str:
        """Store a new tenant (and make its Redis user); returns its API token, which nothing keeps.

        Raises:
            TenantExists: The id is taken or reserved.
            RedisUsersRefused: This Redis will not make the user (nothing is stored then).
        """
        if tenant.id in RESERVED_TENANT_IDS:
            raise TenantExists(f"{tenant.id} is reserved; choose another tenant id")
        token = new_token()
        with self._locked():
            if self.store.get(tenant.id) is not None:
                raise TenantExists(f"tenant {tenant.id} exists already (rotate-token gives it a new token)")
            if redis_user:
                self.users.put(tenant.id, token_hash(token), enabled=tenant.enabled)
            self.store.add(tenant, token_hash(token), redis_user=redis_user)
        return token

    def set_enabled(self, tenant_id: str, enabled: bool) -> Tenant:
        """Enable or disable a tenant: its token and its Redis user (whose connections a disable closes)."""
        with self._locked():
            tenant = self.store.require(tenant_id).model_copy(update={"enabled": enabled})
            self.store.put(tenant)
            if self.store.has_redis_user(tenant_id):
                self.users.put(tenant_id, self._hash_of(tenant_id), enabled=enabled)
                if not enabled:
                    self.users.disconnect(tenant_id)
        return tenant

    def rotate_token(self, tenant_id: str) -> str:
        """A new API token (and Redis password) for the tenant; the old one stops working. Returns the new one."""
        token = new_token()
        with self._locked():
            tenant = self.store.require(tenant_id)
            if self.store.has_redis_user(tenant_id):
                self.users.put(tenant_id, token_hash(token), enabled=tenant.enabled)
                self.users.disconnect(tenant_id)
            self.store.replace_token(tenant_id, token_hash(token))
        return token

    def restore_redis_users(self) -> int:
        """Set every tenant's Redis user as the store has it (a restarted Redis forgot them); how many."""
        restored = 0
        with self._locked():
            for tenant in self.store.all():
                if self.store.has_redis_user(tenant.id):
                    self.users.put(tenant.id, self._hash_of(tenant.id), enabled=tenant.enabled)
                    restored += 1
        return restored

    def _hash_of(self, tenant_id: str) -> str:
        """The hash of the tenant's token; of a token nobody holds if it has none (rotate-token gives one)."""
        return self.store.hash_of(tenant_id) or token_hash(new_token())
