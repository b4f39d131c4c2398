"""``GET /v1/usage``: what each tenant used and cost over a range of UTC days, as JSON or CSV.

The numbers are ``workers.ops.usage``'s, the same that ``framequeue usage`` prints and the dashboard's
usage page shows. The operator's token reads every tenant's; a tenant's token reads its own only
(``usage_for``'s ``as_tenant``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel

from queue_config.tenants import TENANT_ID_PATTERN
from workers.api.bounds import TOO_MANY, within_request_rate
from workers.api.context import ApiContext, CallerTenant, context, require_caller
from workers.ops.usage import TenantTotal, UsageReport, UsageRow, parse_since, usage_report, utc_today

router = APIRouter(
    prefix="/v1", dependencies=[Depends(require_caller), Depends(within_request_rate)], tags=["usage"],
    responses={401: {"description": "Missing or wrong bearer token"}, **TOO_MANY},
)


class UsageOut(BaseModel):
    """Usage from ``since`` to ``until`` (UTC days, both included)."""

    since: str
    until: str
    rows: list[UsageRow]
    totals: list[TenantTotal]


def csv_response(report: UsageReport) -> Response:
    """``report``'s rows as a CSV download named by its days."""
    filename = f"framequeue-usage-{report.since}-{report.until}.csv"
    return Response(report.csv(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def usage_for(api: ApiContext, since: str, tenant: str | None, *, as_tenant: str | None) -> UsageReport:
    """The report a caller may read: every tenant's (or ``tenant``'s) for the operator (``as_tenant`` None);
    a tenant's own for a tenant, who gets 403 for asking after another.

    Raises:
        HTTPException: 422 for a ``since`` that is no day, 403 for another tenant's usage.
    """
    if as_tenant is not None:
        if tenant not in (None, as_tenant):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "a tenant reads its own usage only")
        tenant = as_tenant
    try:
        first = parse_since(since, today=utc_today())
        return usage_report(api.redis, api.settings.namespace, first, tenant=tenant)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


@router.get("/usage", summary="Usage and cost per tenant, stage and model", response_model=UsageOut,
            responses={200: {"content": {"text/csv": {}}}, 403: {"description": "Another tenant's usage"}})
def get_usage(
    request: Request,
    caller: CallerTenant,
    since: Annotated[str, Query(max_length=20, description="YYYY-MM-DD, 'today' or Nd (the last N days)")] = "7d",
    tenant: Annotated[str | None, Query(pattern=TENANT_ID_PATTERN)] = None,
    format: Literal["json", "csv"] = "json",
) -> UsageOut | Response:
    """Stage runs completed (``jobs``), worker and device seconds, provider calls and cost, summed from
    ``since`` to today (UTC) by tenant, stage and catalog model; ``format=csv`` for the rows as CSV.
    A tenant's token reads its own usage only (403 for naming another)."""
    report = usage_for(context(request), since, tenant, as_tenant=caller.id if caller else None)
    if format == "csv":
        return csv_response(report)
    return UsageOut.model_validate(report.as_dict())
