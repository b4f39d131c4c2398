"""Tenants by API token for the HTTP API, each answer kept ``TOKEN_CACHE_S`` at most.

A request's tenant is looked up by its token's SHA-256 (two Redis reads), then kept in this
process for ``TOKEN_CACHE_S``, so a busy client costs no lookups beyond one a second. That bounds
"at once": a disabled tenant's token, or one replaced by ``rotate-token``, opens nothing on any API
process from ``TOKEN_CACHE_S`` after the change. Unknown tokens are not kept (a wrong token costs
a lookup each time; nothing it sends can fill this memory).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from queue_config.tenants import Tenant
from workers.tenants.store import TenantStore, token_hash

#: Longest a looked-up token is trusted without asking Redis again (s).
TOKEN_CACHE_S: Final = 1.0
#: Tokens kept at most; when full, the cache is emptied (there are few tenants).
MAX_CACHED_TOKENS: Final = 1024


class TenantTokens:
    """Finds the enabled tenant of an API token, through a short cache."""

    def __init__(self, store: TenantStore, *, ttl_s: float = TOKEN_CACHE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.ttl_s, self.clock = store, ttl_s, clock
        self._cache: dict[str, tuple[Tenant, float]] = {}
        self._lock = threading.Lock()

    def tenant_of(self, token: str) -> Tenant | None:
        """The enabled tenant whose token this is, or None."""
        hashed, now = token_hash(token), self.clock()
        with self._lock:
            cached = self._cache.get(hashed)
        if cached is not None and cached[1] > now:
            return cached[0]
        tenant = self.store.by_token(token)
        with self._lock:
            if tenant is None:
                self._cache.pop(hashed, None)
                return None
            if len(self._cache) >= MAX_CACHED_TOKENS:
                self._cache.clear()
            self._cache[hashed] = (tenant, now + self.ttl_s)
        return tenant
