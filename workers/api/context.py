"""What every HTTP handler needs: settings, the job records, the broker, and the token checks.

``/v1`` takes the operator's token (``FRAMEQUEUE_API_TOKEN``) or an enabled tenant's
(``framequeue tenants``, looked up by its SHA-256 and trusted for ``TOKEN_CACHE_S`` at most);
the dashboard, ``/metrics`` and ``/docs`` take the operator's only.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

import redis
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from queue_config.settings import Settings
from queue_config.tenants import Tenant
from workers.broker import FramequeueBroker, build_broker
from workers.embedded_redis import resolve_redis_url
from workers.jobs.record import JobStatusStore
from workers.limits import JobCap, RedisLimiter
from workers.redis_connection import redis_client
from workers.tenants import TenantQuotas, TenantStore, TenantTokens


@dataclass
class ApiContext:
    settings: Settings

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(resolve_redis_url(self.settings), decode_responses=True)

    @cached_property
    def status(self) -> JobStatusStore:
        return JobStatusStore(self.redis, self.settings.namespace, retention_s=self.settings.retention_s)

    @cached_property
    def broker(self) -> FramequeueBroker:
        return build_broker(self.settings)

    @cached_property
    def limiter(self) -> RedisLimiter:
        return RedisLimiter(self.redis, self.settings.namespace)

    @cached_property
    def job_cap(self) -> JobCap:
        return JobCap(self.redis, self.status.active_key, self.settings.namespace)

    @cached_property
    def quotas(self) -> TenantQuotas:
        return TenantQuotas(self.redis, self.settings.namespace, self.status.active_key)

    @cached_property
    def tenant_tokens(self) -> TenantTokens:
        return TenantTokens(TenantStore(self.redis, self.settings.namespace))


def context(request: Request) -> ApiContext:
    return request.app.state.context  # type: ignore[no-any-return]


_bearer = HTTPBearer(auto_error=False)


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Bearer-token auth (``FRAMEQUEUE_API_TOKEN``), the header only: no cookie opens ``/v1`` or ``/metrics``."""
    expected = context(request).settings.api_token
    given = credentials.credentials if credentials else ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


def require_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Tenant | None:
    """The bearer token's tenant, or None for the operator's token; 401 for any other (the header only)."""
    given = credentials.credentials if credentials else ""
    expected = context(request).settings.api_token
    if expected and hmac.compare_digest(given.encode(), expected.encode()):
        return None
    tenant = context(request).tenant_tokens.tenant_of(given) if given else None
    if tenant is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    return tenant


#: A ``/v1`` handler's caller: its tenant, or None for the operator.
CallerTenant = Annotated[Tenant | None, Depends(require_caller)]
