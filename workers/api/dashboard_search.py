"""The dashboard's job list: search by id, prompt text and batch, filters (tenant among them), and cursor pagination."""

from __future__ import annotations

from fastapi import HTTPException, Request, Response, status

from queue_config.stages import STAGES
from workers.api.context import context
from workers.api.dashboard_kit import guarded, render
from workers.jobs.record import TERMINAL_STATES
from workers.ops.job_search import BadCursor, JobQuery, search_jobs

#: Page sizes an operator may pick.
PAGE_SIZES = (20, 50, 100, 500)


@guarded.get("/jobs")
def jobs(request: Request, q: str = "", batch: str = "", state: str = "", kind: str = "", stage: str = "",
         tenant: str = "", limit: int = 50, cursor: str = "") -> Response:
    """A page of jobs, newest first, matching the search; its "next" link carries the cursor to go on from."""
    query = JobQuery(text=q.strip(), batch_id=batch.strip(), state=state, kind=kind, stage=stage,
                     tenant=tenant.strip())
    limit = max(1, min(limit, PAGE_SIZES[-1]))
    try:
        page = search_jobs(context(request).status, query, limit=limit, cursor=cursor)
    except BadCursor as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    return render(request, "jobs.html", jobs=page.jobs, next_cursor=page.next_cursor, scanned=page.scanned,
                  window_spent=page.window_spent, paged=bool(cursor), q=query.text, batch=query.batch_id,
                  state=state, kind=kind, stage=stage, tenant=query.tenant, limit=limit, sizes=PAGE_SIZES,
                  states=("queued", "running", "waiting", *TERMINAL_STATES), stages=list(STAGES))
