"""The dashboard's actions: POSTs that change queues, dead letters, jobs, batches and keys, asking first."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import HTTPException, Request, Response, status

from queue_config.stages import is_batch_queue
from workers import batches, ops
from workers.api.context import context
from workers.api.dashboard_kit import (
    Form,
    actions,
    ask_first,
    back_to,
    known_batch,
    known_queue,
    store_of,
)
from workers.keys.pool import set_key_enabled

# Actions --------------------------------------------------------------------------------------

@actions.post("/failed/{queue}/{redis_id}/requeue")
def requeue(request: Request, queue: str, redis_id: str, fields: Form) -> Response:
    ctx = context(request)
    done = ops.requeue_dead_letter(ctx.broker, ctx.status, known_queue(queue), redis_id)
    return back_to(request, fields, "/failed", "requeued" if done else "gone")


@actions.post("/failed/{queue}/requeue-all")
def requeue_all(request: Request, queue: str, fields: Form) -> Response:
    ctx, queue = context(request), known_queue(queue)
    # Every letter there is now, not only the page's newest (nor those dead-lettered again meanwhile).
    dead = next(stats.dead for stats in ops.queue_stats(ctx.status) if stats.name == queue)
    for letter in ops.dead_letters(ctx.status, queue, limit=max(dead, 1)):
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
    if is_batch_queue(queue):  # cancelled batch jobs no worker will see: complete their batches
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


@actions.post("/jobs/{job_id}/retry")
def retry(request: Request, job_id: str, fields: Form) -> Response:
    """A failed job runs again: its dead letter requeued, or from its first stage (see ``ops.retry_job``)."""
    ctx = context(request)
    done = ops.retry_job(ctx.broker, ctx.status, job_id)
    return back_to(request, fields, f"/jobs/{quote(job_id)}", "job_retried" if done else "gone")


@actions.post("/keys/{fingerprint}/{verb}")
def key_enabled(request: Request, fingerprint: str, verb: str, fields: Form) -> Response:
    """Enable a disabled key again, or disable one, for every worker at once."""
    if verb not in {"enable", "disable"}:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no key action {verb!r}")
    if verb == "disable" and (page := ask_first(request, fields, f"Disable key {fingerprint} for every worker?")):
        return page
    ctx = context(request)
    done = set_key_enabled(ctx.redis, ctx.settings.namespace, fingerprint, verb == "enable")
    return back_to(request, fields, "", f"key_{verb}d" if done else "gone")


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
