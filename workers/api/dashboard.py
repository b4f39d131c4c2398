"""The operator dashboard under ``/dashboard``: server-rendered pages over ``workers.ops``.

Auth is the API token as a bearer header, or a sign-in session: the login form takes the token
once and sets a cookie holding a random session id (workers/api/sessions.py), never the token.
Actions are POSTs; one that a session cookie authenticates must come from this origin and carry
the session's CSRF token (workers/api/csrf.py). Destructive actions ask first: a ``confirm()``
in the browser, or, without JavaScript, a confirmation page. Links start with the request's
``root_path``, so the dashboard works behind a reverse proxy's URL prefix.
"""

from __future__ import annotations

import hmac
from typing import cast
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, RedirectResponse

from queue_config.remote import load_remote_config
from workers import batches, ops
from workers.api import dashboard_actions, dashboard_search, dashboard_usage  # noqa: F401  (they register their routes)
from workers.api.context import context
from workers.api.csrf import require_csrf_token, require_same_origin
from workers.api.dashboard_kit import (
    BATCH_PAGE_JOBS,
    DASHBOARD_DIR,
    INLINE_TEXT_MAX_BYTES,
    OVERVIEW_BATCHES,
    OVERVIEW_COUNTED_JOBS,
    Form,
    actions,
    back_to,
    guarded,
    known_batch,
    known_queue,
    render,
    root_of,
    router,
    same_site,
    signed_in,
    store_of,
    with_manifest_url,
)
from workers.api.security_headers import ARTIFACT_CONTENT_SECURITY_POLICY
from workers.api.sessions import (
    clear_session_cookie,
    current_session,
    sessions_of,
    set_session_cookie,
    token_fingerprint,
)
from workers.jobs.reconciler import repair_stats
from workers.keys.pool import key_health
from workers.ops.workers import list_workers

#: Stored bytes served here are never a page (the other security headers come from the middleware).
ARTIFACT_HEADERS = {"Content-Security-Policy": ARTIFACT_CONTENT_SECURITY_POLICY}

# Sign-in --------------------------------------------------------------------------------------

@router.get("/login")
def login_form(request: Request) -> Response:
    return render(request, "login.html", error="", next=request.query_params.get("next", ""))


@router.post("/login", dependencies=[Depends(same_site)])
def login(request: Request, fields: Form) -> Response:
    expected, given = context(request).settings.api_token, fields.get("token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return render(request, "login.html", status.HTTP_401_UNAUTHORIZED, error="Wrong token.",
                      next=fields.get("next", ""))
    response = back_to(request, {"back": fields.get("next", "")}, "")
    set_session_cookie(request, response, sessions_of(request).create(expected))
    return response


@router.post("/logout")
def logout(request: Request, fields: Form) -> Response:
    """Ends the session (its Redis key is deleted: the old cookie opens nothing) and drops the cookie."""
    if session := current_session(request):
        require_same_origin(request)
        require_csrf_token(session, fields)
        sessions_of(request).revoke(session.id)
    response = RedirectResponse(f"{root_of(request)}/dashboard/login", status.HTTP_303_SEE_OTHER)
    clear_session_cookie(request, response)
    return response


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in {"dashboard.css", "dashboard.js"}:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return FileResponse(DASHBOARD_DIR / "static" / name, headers={"Cache-Control": "max-age=300"})


# Pages ----------------------------------------------------------------------------------------

@router.get("", dependencies=[Depends(signed_in)])
def overview(request: Request) -> Response:
    """Health at a glance: a row per stage queue, why jobs wait, each limit's use, throughput; then the rest."""
    ctx = context(request)
    minutes = ops.throughput(ctx.status)
    keys = key_health(ctx.redis, ctx.settings.namespace)
    limits = ops.limits_usage(ctx.status, ctx.settings, load_remote_config(ctx.settings.remote_config),
                              token_fingerprint(ctx.settings.api_token), keys)
    return render(
        request, "overview.html", stages=ops.stage_rows(ctx.status), waiting=ops.wait_reasons(ctx.status),
        limits=limits, counts=ops.job_counts(ctx.status, OVERVIEW_COUNTED_JOBS), counted=OVERVIEW_COUNTED_JOBS,
        indexed=ctx.status.client.zcard(ctx.status.index_key),
        workers=ops.broker_heartbeats(ctx.status, ctx.settings.heartbeat_timeout_ms), minutes=minutes,
        peak=max([1, *(m.succeeded + m.failed for m in minutes)]), keys=keys,
        jobs=ctx.status.list_jobs(limit=10), repairs=repair_stats(ctx.status),
        batches=[with_manifest_url(request, b) for b in batches.list_batches(ctx.status, OVERVIEW_BATCHES)],
    )


@guarded.get("/jobs/{job_id}")
def job(request: Request, job_id: str) -> Response:
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
    if record.state == "queued":
        from workers.jobs.position import queue_position

        position = queue_position(context(request).status, job_id)
        record.queue_position = position.ahead if position else None
    forming = not record.finished and record.progress.get("image", "") and "image" not in record.artifacts
    return render(request, "job.html", job=record, previews=previews, forming_preview=bool(forming))


@guarded.get("/jobs/{job_id}/preview")
def preview(request: Request, job_id: str) -> Response:
    """The newest preview of the key image while it renders (workers/jobs/progress.py)."""
    from workers.jobs.progress import preview_key

    api = context(request)
    png = api.broker.client.get(preview_key(api.status, job_id))
    if png is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no preview yet")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@guarded.get("/jobs/{job_id}/artifacts/{name}")
def artifact(request: Request, job_id: str, name: str) -> Response:
    """An artifact's bytes, for stores whose share URL a browser cannot open (the local directory)."""
    record = context(request).status.get(job_id)
    if record is None or name not in record.artifacts:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact")
    found = record.artifacts[name]
    return Response(store_of(request).get_bytes(found["key"]), media_type=found.get("content_type"),
                    headers=ARTIFACT_HEADERS)


@guarded.get("/queues/{queue}")
def queue(request: Request, queue: str) -> Response:
    ctx = context(request)
    stats = next(s for s in ops.queue_stats(ctx.status) if s.name == known_queue(queue))
    messages = [{"message_id": m.get("message_id", ""), "job_id": ops.job_id_of(m),
                 "enqueued_at": m.get("message_timestamp", 0) / 1000, "retries": m.get("options", {}).get("retries", 0)}
                for m in ops.ready_messages(ctx.status, queue)]
    delayed, delayed_read = ops.delayed_messages(ctx.status, queue)
    return render(request, "queue.html", stats=stats, messages=messages, letters=ops.dead_letters(ctx.status, queue),
                  delayed=delayed, delayed_read=delayed_read)


@guarded.get("/failed")
def failed(request: Request, queue: str = "") -> Response:
    status_store = context(request).status
    names = [known_queue(queue)] if queue else ops.queue_names()
    letters = sorted((letter for name in names for letter in ops.dead_letters(status_store, name)),
                     key=lambda letter: -letter.dead_at)
    return render(request, "failed.html", letters=letters, queue=queue, queues=ops.queue_names())


@guarded.get("/blocked")
def blocked(request: Request) -> Response:
    """What the safety checks blocked: counts by check and category, and the newest blocked jobs."""
    status_store = context(request).status
    return render(request, "blocked.html", counts=ops.block_counts(status_store),
                  jobs=ops.recent_blocks(status_store), limit=ops.RECENT_BLOCKS)


@guarded.get("/batches/{batch_id}")
def batch(request: Request, batch_id: str) -> Response:
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
    return Response(store_of(request).get_bytes(key), media_type="application/x-ndjson", headers=ARTIFACT_HEADERS)


@guarded.get("/workers")
def worker_list(request: Request) -> Response:
    """Every registered worker process (host, pid, stages, models, running jobs), stale ones marked."""
    ctx = context(request)
    return render(request, "workers.html", workers=list_workers(ctx.redis, ctx.settings.namespace))



router.include_router(guarded)
router.include_router(actions)
