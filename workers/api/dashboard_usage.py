"""The dashboard's usage page: what each tenant used and cost over a range of days, and its CSV.

The report is ``workers.ops.usage``'s, the one ``GET /v1/usage`` and ``framequeue usage`` give; the
CSV link serves it to a signed-in browser, which holds a session rather than the API's bearer token.
"""

from __future__ import annotations

import re

from fastapi import HTTPException, Request, Response, status

from queue_config.tenants import TENANT_ID_PATTERN
from workers.api.context import context
from workers.api.dashboard_kit import guarded, render
from workers.api.usage import csv_response
from workers.ops.usage import UsageReport, parse_since, usage_report, utc_today


def report_of(request: Request, since: str, tenant: str) -> UsageReport:
    """The report the page's filters ask for; 400 for a day or tenant that cannot be one."""
    if tenant and not re.fullmatch(TENANT_ID_PATTERN, tenant):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "tenant: lower case letters, digits and '-'")
    try:
        ctx = context(request)
        return usage_report(ctx.redis, ctx.settings.namespace, parse_since(since[:20], today=utc_today()),
                            tenant=tenant or None)
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None


@guarded.get("/usage")
def usage(request: Request, since: str = "7d", tenant: str = "") -> Response:
    """Each tenant's usage by stage and model, with its total, and a link to the same rows as CSV."""
    report = report_of(request, since, tenant.strip())
    return render(request, "usage.html", report=report, since=since, tenant=tenant.strip())


@guarded.get("/usage.csv")
def usage_csv(request: Request, since: str = "7d", tenant: str = "") -> Response:
    return csv_response(report_of(request, since, tenant.strip()))
