"""The operator dashboard under ``/dashboard``: server-rendered pages over ``workers.ops``.

Auth is the API token, as a bearer header or the ``framequeue_token`` cookie that the login
form sets (HttpOnly, SameSite=Strict: scripts cannot read it and other sites' requests do not
carry it). Actions are POSTs; one whose ``Sec-Fetch-Site`` or ``Origin`` names another site is
refused too, and every page forbids framing. Destructive actions ask first: a ``confirm()``
in the browser, or, without JavaScript, a confirmation page. Links start with the request's
``root_path``, so the dashboard works behind a reverse proxy's URL prefix.
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates

from queue_config.stages import STAGES, stage_of_actor
from storage import ObjectStore, open_store
from workers import batches, ops
from workers.api.context import context, require_token
from workers.batch_files import BATCH_ID_PATTERN
from workers.job_status import TERMINAL_STATES
from workers.keys.pool import key_health

COOKIE = "framequeue_token"
#: Text artifacts up to this size are shown inline on the job page.
INLINE_TEXT_MAX_BYTES = 4096
#: Batches shown on the overview, newest first.
OVERVIEW_BATCHES = 20
#: Jobs listed on a batch's page, by line number.
BATCH_PAGE_JOBS = 200
#: What an action reports on the page it returns to: fixed texts, nothing from the URL is echoed.
DONE = {
    "requeued": "Requeued: the message is back on its queue with its retries reset.",
    "deleted": "Dead letter deleted.", "emptied": "Queue emptied; the jobs it carried were cancelled.",
    "cancelled": "Job cancelled.", "gone": "Nothing to do: it was already gone or finished.",
    "retried": "The batch's failed jobs are queued again, from their first stage.",
    "batch_cancelled": "Batch cancelled: its unfinished jobs stop at their next message.",
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' http: https:; media-src 'self' http: https:; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}
_DIR = Path(__file__).parent
_bearer = HTTPBearer(auto_error=False)


def root_of(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _ago(epoch_s: float) -> str:
    seconds = max(0.0, time.time() - epoch_s)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _span(seconds: float | None) -> str:
    """A duration for people (``2 h 5 min``), or "—" when there is none."""
    if seconds is None:
        return "—"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min" if minutes else f"{seconds:.0f} s"


TEMPLATES = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(_DIR / "templates"),
                                                   autoescape=True, undefined=jinja2.StrictUndefined))
TEMPLATES.env.filters.update(ago=_ago, span=_span, clock=lambda s: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s)))


def signed_in(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """``require_token``; a browser that has not signed in is sent to the login form instead."""
    try:
        require_token(request, credentials)
    except HTTPException:
        if request.method != "GET":
            raise
        login = f"{root_of(request)}/dashboard/login?next={quote(here(request))}"
        raise HTTPException(status.HTTP_303_SEE_OTHER, "sign in first", headers={"Location": login}) from None


def same_site(request: Request) -> None:
    """Refuse a POST that a browser says came from another site (defence beside SameSite=Strict)."""
    origin = request.headers.get("origin")
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    if request.headers.get("sec-fetch-site") == "cross-site" or (origin and urlsplit(origin).netloc not in hosts):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")


async def form_of(request: Request) -> dict[str, str]:
    """The POSTed urlencoded form (parsed here: no multipart dependency for three fields)."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


Form = Annotated[dict[str, str], Depends(form_of)]
router = APIRouter(prefix="/dashboard", include_in_schema=False)
guarded = APIRouter(dependencies=[Depends(signed_in)])
actions = APIRouter(dependencies=[Depends(same_site), Depends(signed_in)])


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    done = DONE.get(request.query_params.get("done", ""), "")
    values = {"root": root_of(request), "done": done, "here": here(request), **values}
    return TEMPLATES.TemplateResponse(request, template, values, status_code=status_code, headers=_HEADERS)


def here(request: Request, *, query: bool = True) -> str:
    """This page's URL path under the root path (whether or not the server already put it in ``path``)."""
    root, path = root_of(request), request.url.path
    path = path[len(root):] if root and path.startswith(f"{root}/") else path
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "done"] if query else []
    return root + path + (f"?{urlencode(kept)}" if kept else "")


def safe_back(request: Request, value: str) -> str:
    """``value`` if it is a dashboard path of this site (a place to return to), else ""."""
    back = urlsplit(value)
    local = not (back.scheme or back.netloc) and "//" not in back.path and "\\" not in value
    return value if local and back.path.startswith(f"{root_of(request)}/dashboard") else ""


def back_to(request: Request, fields: dict[str, str], fallback: str, done: str = "") -> RedirectResponse:
    """See-other to the dashboard page the form came from (else ``fallback``), reporting ``done``."""
    back = urlsplit(safe_back(request, fields.get("back", "")) or f"{root_of(request)}/dashboard{fallback}")
    query = [(k, v) for k, v in parse_qsl(back.query) if k != "done"] + ([("done", done)] if done else [])
    return RedirectResponse(back.path + (f"?{urlencode(query)}" if query else ""), status.HTTP_303_SEE_OTHER)


def ask_first(request: Request, fields: dict[str, str], question: str) -> HTMLResponse | None:
    """The confirmation page, unless the form says the operator has confirmed already."""
    if fields.get("confirmed") == "yes":
        return None
    return render(request, "confirm.html", question=question, action=here(request, query=False),
                  back=safe_back(request, fields.get("back", "")))


def store_of(request: Request) -> ObjectStore:
    state = request.app.state
    if getattr(state, "dashboard_store", None) is None:
        state.dashboard_store = open_store(context(request).settings)
    return state.dashboard_store  # type: ignore[no-any-return]


def known_queue(queue: str) -> str:
    if queue not in ops.queue_names():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no stage queue {queue!r}")
    return queue


def known_batch(request: Request, batch_id: str) -> dict[str, Any]:
    """The batch's progress, or 404."""
    found = batches.batch_progress(context(request).status, batch_id) if BATCH_ID_PATTERN.fullmatch(batch_id) else None
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch {batch_id!r}")
    return found


def with_manifest_url(request: Request, progress: dict[str, Any]) -> dict[str, Any]:
    """``progress`` plus ``manifest_url``: the store's share URL, or this dashboard's when a browser cannot open it."""
    url, key = "", progress["manifest_key"]
    if key:
        url = store_of(request).share_url(key, context(request).settings.presigned_url_ttl_s)
        if not url.startswith(("http://", "https://")):
            url = f"{root_of(request)}/dashboard/batches/{progress['batch_id']}/manifest"
    return {**progress, "manifest_url": url}


# Sign-in --------------------------------------------------------------------------------------

@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", error="", next=request.query_params.get("next", ""))


@router.post("/login", dependencies=[Depends(same_site)])
def login(request: Request, fields: Form) -> Response:
    expected, given = context(request).settings.api_token, fields.get("token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return render(request, "login.html", status.HTTP_401_UNAUTHORIZED, error="Wrong token.",
                      next=fields.get("next", ""))
    response = back_to(request, {"back": fields.get("next", "")}, "")
    response.set_cookie(COOKIE, given, httponly=True, samesite="strict", path=f"{root_of(request)}/",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout", dependencies=[Depends(same_site)])
def logout(request: Request) -> Response:
    response = RedirectResponse(f"{root_of(request)}/dashboard/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path=f"{root_of(request)}/")
    return response


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in {"dashboard.css", "dashboard.js"}:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return FileResponse(_DIR / "static" / name, headers={"Cache-Control": "max-age=300"})


# Pages ----------------------------------------------------------------------------------------

@router.get("", dependencies=[Depends(signed_in)])
def overview(request: Request) -> HTMLResponse:
    ctx = context(request)
    minutes = ops.throughput(ctx.status)
    return render(
        request, "overview.html", queues=ops.queue_stats(ctx.status), counts=ops.job_counts(ctx.status),
        workers=ops.workers(ctx.status, ctx.settings.heartbeat_timeout_ms), minutes=minutes,
        peak=max([1, *(m.succeeded + m.failed for m in minutes)]), keys=key_health(ctx.redis, ctx.settings.namespace),
        jobs=ctx.status.list_jobs(limit=10),
        batches=[with_manifest_url(request, b) for b in batches.list_batches(ctx.status, OVERVIEW_BATCHES)],
    )


@guarded.get("/jobs")
def jobs(request: Request, state: str = "", kind: str = "", stage: str = "", limit: int = 100) -> HTMLResponse:
    limit = max(1, min(limit, 1000))
    found = context(request).status.list_jobs(state=state or None, kind=kind or None,
                                              limit=limit if not stage else 10 * limit)
    if stage:
        found = [job for job in found if job.stage == stage and not job.finished][:limit]
    return render(request, "jobs.html", jobs=found, state=state, kind=kind, stage=stage, limit=limit,
                  states=("queued", "running", "waiting", *TERMINAL_STATES), stages=list(STAGES))


@guarded.get("/jobs/{job_id}")
def job(request: Request, job_id: str) -> HTMLResponse:
    record = context(request).status.get(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    store, previews = store_of(request), {}
    for name, artifact in record.artifacts.items():
        url = store.share_url(artifact["key"], context(request).settings.presigned_url_ttl_s)
        if not url.startswith(("http://", "https://")):
            url = f"{root_of(request)}/dashboard/jobs/{quote(job_id)}/artifacts/{quote(name)}"
        text, small = "", artifact.get("size_bytes", 0) <= INLINE_TEXT_MAX_BYTES
        if artifact.get("content_type", "").startswith("text/") and small:
            try:
                text = store.get_bytes(artifact["key"]).decode("utf-8", "replace")
            except KeyError:
                text = "(missing from the store)"
        previews[name] = {"url": url, "text": text, **artifact}
    return render(request, "job.html", job=record, previews=previews)


@guarded.get("/jobs/{job_id}/artifacts/{name}")
def artifact(request: Request, job_id: str, name: str) -> Response:
    """An artifact's bytes, for stores whose share URL a browser cannot open (the local directory)."""
    record = context(request).status.get(job_id)
    if record is None or name not in record.artifacts:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact")
    found = record.artifacts[name]
    return Response(store_of(request).get_bytes(found["key"]), media_type=found.get("content_type"))


@guarded.get("/queues/{queue}")
def queue(request: Request, queue: str) -> HTMLResponse:
    ctx = context(request)
    stats = next(s for s in ops.queue_stats(ctx.status) if s.name == known_queue(queue))
    messages = [{"message_id": m.get("message_id", ""), "job_id": ops.job_id_of(m),
                 "enqueued_at": m.get("message_timestamp", 0) / 1000, "retries": m.get("options", {}).get("retries", 0)}
                for m in ops.ready_messages(ctx.status, queue)]
    return render(request, "queue.html", stats=stats, messages=messages, letters=ops.dead_letters(ctx.status, queue))


@guarded.get("/failed")
def failed(request: Request, queue: str = "") -> HTMLResponse:
    status_store = context(request).status
    names = [known_queue(queue)] if queue else ops.queue_names()
    letters = sorted((letter for name in names for letter in ops.dead_letters(status_store, name)),
                     key=lambda letter: -letter.dead_at)
    return render(request, "failed.html", letters=letters, queue=queue, queues=ops.queue_names())


@guarded.get("/batches/{batch_id}")
def batch(request: Request, batch_id: str) -> HTMLResponse:
    progress, status_store = known_batch(request, batch_id), context(request).status
    lines = cast("list[tuple[str, float]]", status_store.client.zrange(
        batches.items_key(status_store, batch_id), 0, BATCH_PAGE_JOBS - 1, withscores=True))
    found = [(int(line), record) for job_id, line in lines if (record := status_store.get(job_id)) is not None]
    return render(request, "batch.html", batch=with_manifest_url(request, progress), lines=found)


@guarded.get("/batches/{batch_id}/manifest")
def manifest(request: Request, batch_id: str) -> Response:
    """A completed batch's manifest, for stores whose share URL a browser cannot open (the local directory)."""
    key = known_batch(request, batch_id)["manifest_key"]
    if not key:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the batch has no manifest yet")
    return Response(store_of(request).get_bytes(key), media_type="application/x-ndjson")


# Actions --------------------------------------------------------------------------------------

@actions.post("/failed/{queue}/{redis_id}/requeue")
def requeue(request: Request, queue: str, redis_id: str, fields: Form) -> Response:
    ctx = context(request)
    done = ops.requeue_dead_letter(ctx.broker, ctx.status, known_queue(queue), redis_id)
    return back_to(request, fields, "/failed", "requeued" if done else "gone")


@actions.post("/failed/{queue}/requeue-all")
def requeue_all(request: Request, queue: str, fields: Form) -> Response:
    ctx = context(request)
    for letter in ops.dead_letters(ctx.status, known_queue(queue)):
        ops.requeue_dead_letter(ctx.broker, ctx.status, queue, letter.redis_id)
    return back_to(request, fields, "/failed", "requeued")


@actions.post("/failed/{queue}/{redis_id}/delete")
def delete(request: Request, queue: str, redis_id: str, fields: Form) -> Response:
    if page := ask_first(request, fields, f"Delete dead letter {redis_id} of queue {queue} for good?"):
        return page
    done = ops.delete_dead_letter(context(request).status, known_queue(queue), redis_id)
    return back_to(request, fields, "/failed", "deleted" if done else "gone")


@actions.post("/queues/{queue}/empty")
def empty(request: Request, queue: str, fields: Form) -> Response:
    if page := ask_first(request, fields, f"Remove every waiting message of queue {queue} and cancel their jobs?"):
        return page
    ctx = context(request)
    ops.empty_queue(ctx.status, known_queue(queue))
    if stage_of_actor(queue) != queue:  # cancelled batch jobs no worker will see: complete their batches
        for found in batches.list_batches(ctx.status):
            if not found["completed"]:
                batches.complete_if_done(ctx.status, store_of(request), found["batch_id"],
                                         ctx.settings.presigned_url_ttl_s)
    return back_to(request, fields, f"/queues/{queue}", "emptied")


@actions.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str, fields: Form) -> Response:
    if page := ask_first(request, fields, f"Cancel job {job_id}? Its stages stop at the next message."):
        return page
    done = context(request).status.cancel(job_id)
    return back_to(request, fields, f"/jobs/{quote(job_id)}", "cancelled" if done else "gone")


@actions.post("/batches/{batch_id}/retry-failed")
def retry_batch(request: Request, batch_id: str, fields: Form) -> Response:
    known_batch(request, batch_id)
    if page := ask_first(request, fields, f"Queue the failed jobs of batch {batch_id} again?"):
        return page
    ctx = context(request)
    retried = batches.retry_failed(ctx.status, ctx.broker, batch_id)
    return back_to(request, fields, f"/batches/{batch_id}", "retried" if retried else "gone")


@actions.post("/batches/{batch_id}/cancel")
def cancel_batch(request: Request, batch_id: str, fields: Form) -> Response:
    known_batch(request, batch_id)
    if page := ask_first(request, fields, f"Cancel every unfinished job of batch {batch_id}?"):
        return page
    ctx = context(request)
    cancelled = batches.cancel_batch(ctx.status, ctx.broker, batch_id,
                                     store=store_of(request), url_ttl_s=ctx.settings.presigned_url_ttl_s)
    return back_to(request, fields, f"/batches/{batch_id}", "batch_cancelled" if cancelled else "gone")


router.include_router(guarded)
router.include_router(actions)
