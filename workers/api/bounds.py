"""Per-token bounds of the API: a request rate, and a cap on the token's unfinished jobs.

Both are keyed by the caller: a tenant's id for a tenant's token (so a new token keeps the tenant's
count), else the fingerprint of the bearer token (``token_fingerprint``), never the token.

- **Request rate**: every ``/v1`` request and ``/metrics`` scrape counts against the token's
  ``api_requests_per_minute`` with ``api_request_burst`` more at once, on the project's GCRA
  (``workers/limits``: one Redis round trip, Redis's clock, shared by every API replica). Over it:
  429 with ``Retry-After`` in whole seconds (at least 1) and a JSON ``detail``; a refused request
  books nothing. Dashboard pages are not limited (a session is one operator's browser).
- **Queued-jobs cap**: a submission (one job, or a batch file's good lines) that would put the
  token's unfinished jobs over ``api_max_queued_jobs`` is refused whole with 429
  (``workers/limits/job_cap.py`` counts them).
- **Tenant quotas**: a tenant's submission is also held to its own ``Quotas`` (submissions per minute,
  unfinished jobs, a daily budget that refuses: ``workers/tenants/quotas.py``); over one: 429 with
  ``Retry-After`` and a ``detail`` that starts ``quota:``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from queue_config.tenants import Tenant
from workers.api.context import CallerTenant, context
from workers.api.sessions import token_fingerprint
from workers.errors import OverCap
from workers.tenants import OverQuota

#: What ``/v1`` routers list for 429.
TOO_MANY: Final[dict[int | str, dict[str, Any]]] = {
    429: {"description": "Over the token's request rate or its cap on unfinished jobs, or over a tenant quota "
                          "(see Retry-After)"},
}

_bearer = HTTPBearer(auto_error=False)


def caller(
    tenant: CallerTenant, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Whose bounds the request counts against, once its token is checked: ``tenant:{id}`` for a tenant's
    token, else the fingerprint of the (operator's) token."""
    if tenant is not None:
        return f"tenant:{tenant.id}"
    return token_fingerprint(credentials.credentials if credentials else "")


Caller = Annotated[str, Depends(caller)]


def within_request_rate(request: Request, fingerprint: Caller) -> None:
    """Count the request against its token's rate; 429 with ``Retry-After`` when it is over."""
    api = context(request)
    wait_ms = api.limiter.rate_wait_ms(f"api:{fingerprint}", api.settings.api_requests_per_minute,
                                       api.settings.api_request_burst)
    if wait_ms > 0:
        retry_after_s = max(1, math.ceil(wait_ms / 1000))
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"over {api.settings.api_requests_per_minute:g} requests per minute for this token; "
                            f"retry after {retry_after_s} s", headers={"Retry-After": str(retry_after_s)})


@contextmanager
def within_queued_jobs_cap(request: Request, fingerprint: str, job_ids: Sequence[str]) -> Iterator[None]:
    """Hold the jobs against their token's cap while the block accepts them; 429 when they would go over."""
    api = context(request)
    try:
        api.job_cap.take(fingerprint, job_ids, api.settings.api_max_queued_jobs)
    except OverCap as over:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"too many unfinished jobs for this token: {over}; wait for some to finish "
                            "or cancel them") from None
    try:
        yield
    finally:
        api.job_cap.settle(fingerprint, job_ids)


@contextmanager
def within_tenant_quotas(request: Request, tenant: Tenant | None, job_ids: Sequence[str]) -> Iterator[None]:
    """Hold the jobs against their tenant's quotas while the block accepts them; 429 with ``Retry-After`` when
    they are over one (nothing for the operator's token)."""
    try:
        with context(request).quotas.admitting(tenant, job_ids):
            yield
    except OverQuota as over:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(over),
                            headers={"Retry-After": str(over.retry_after_s)}) from None
