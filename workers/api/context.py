"""What every HTTP handler needs: settings, the job records, the broker, and the token check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

import redis
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from queue_config.settings import Settings
from workers.broker import FramequeueBroker, build_broker
from workers.embedded_redis import resolve_redis_url
from workers.jobs.record import JobStatusStore
from workers.limits import JobCap, RedisLimiter
from workers.redis_connection import redis_client


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
