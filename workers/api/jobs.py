"""The job API under /v1: submit, read, list and cancel jobs, and follow one job's events live.

Every route needs the bearer token and counts against the token's request rate
(``workers/api/bounds.py``). A tenant's token sees and cancels that tenant's jobs only (another's
answer 404, as if they did not exist), and its jobs are the tenant's whatever they say; the
operator's token sees every job. A refused request gets 422 with each error's place and reason, never
the values sent: a stray field may hold a secret. A job's events are server-sent events read from
the Redis event stream by a blocking XREAD on an asyncio client, so an open stream holds one Redis
connection but none of the threads that the sync handlers share.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Annotated, Any, Final, Literal, cast

import anyio
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from queue_config.catalog import ModelRefused, catalog_of
from queue_config.jobs import JobKind, JobSpec
from workers.api.bounds import TOO_MANY, Caller, within_queued_jobs_cap, within_request_rate, within_tenant_quotas
from workers.api.context import CallerTenant, context, require_caller
from workers.embedded_redis import resolve_redis_url
from workers.jobs.record import TERMINAL_STATES, JobRecord
from workers.jobs.submit import Submission, submit_job
from workers.redis_connection import async_redis_client
from workers.tenants import PriorityNotAllowed, may_see, owner, stamped

#: Largest body ``POST /v1/jobs`` reads: a spec at every limit (two 1000-character prompts) is far smaller.
MAX_SUBMIT_BODY_BYTES: Final = 64 * 1024
#: Errors listed in a 422 answer (a body can carry thousands).
MAX_LISTED_ERRORS: Final = 20
#: How long one XREAD waits for new events before the job's record is looked at again.
EVENTS_READ_BLOCK_MS: Final = 5_000
#: Stream entries fetched per XREAD.
EVENTS_READ_COUNT: Final = 500
#: A job's events are read from this long before its creation: the submitter's clock may run ahead of Redis's.
EVENTS_CLOCK_SKEW_S: Final = 60

#: The states ``workers.jobs.record`` writes, for filtering the list.
JobState = Literal["queued", "running", "waiting", "succeeded", "failed", "blocked", "cancelled"]


def redacted_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Each validation error's ``loc``, ``msg`` and ``type``; the input values and context are dropped."""
    listed = []
    for error in errors[:MAX_LISTED_ERRORS]:
        message = error["msg"]
        if error["type"] == "json_invalid":  # the decoder's reason ("Expecting value") quotes no input
            message = f"{message}: {error.get('ctx', {}).get('error', '')}"
        listed.append({"loc": list(error["loc"]), "msg": message, "type": error["type"]})
    return listed


class RedactedValidationRoute(APIRoute):
    """A route whose 422 answers say where and why a request is invalid, not what it contained."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_redacted(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as error:
                content = {"detail": redacted_errors(error.errors()), "error_count": len(error.errors())}
                return JSONResponse(content, status.HTTP_422_UNPROCESSABLE_CONTENT)

        return handle_redacted


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


class JobList(BaseModel):
    jobs: list[JobRecord]


class Cancelled(BaseModel):
    cancelled: bool


class JobEvent(BaseModel):
    """One entry of the job event stream: the ``data`` of a server-sent event."""

    #: The stream entry's id (also the SSE ``id``, for ``Last-Event-ID``); empty for a final
    #: event made from the record because the stream no longer held it.
    id: str
    job_id: str
    #: A state (``queued``, ``running``, ``succeeded``...) or a note such as ``retrying``.
    event: str
    #: Epoch seconds.
    at: float
    stage: str = ""
    error: str = ""
    #: A ``progress`` event's steps done and steps in all.
    step: int | None = None
    total: int | None = None
    #: A ``fallback`` event's models (the stage moved from one to the other) and why it moved.
    from_model: str = ""
    to_model: str = ""
    reason: str = ""
    #: The tenant whose job it is (``operator`` for the operator's).
    tenant: str = ""


_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {404: {"model": Problem, "description": "No job with this id"}}
_EVENTS_OPENAPI: Final = {"responses": {"200": {"content": {"text/event-stream": {"itemSchema": {
    "type": "object", "required": ["event", "data"],
    "properties": {"event": {"type": "string"}, "id": {"type": "string"},
                   "data": {"type": "string", "contentMediaType": "application/json",
                            "contentSchema": JobEvent.model_json_schema()}},
}}}}}}

router = APIRouter(
    prefix="/v1", dependencies=[Depends(require_caller), Depends(within_request_rate)], tags=["jobs"],
    route_class=RedactedValidationRoute,
    responses={401: {"model": Problem, "description": "Missing or wrong bearer token"}, **TOO_MANY},
)


def existing_job(job_id: str, request: Request, tenant: CallerTenant) -> JobRecord:
    """The job's record; 404 when there is none, or it is another tenant's."""
    record = context(request).status.get(job_id)
    if record is None or not may_see(tenant, record.tenant):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    return record


def redis_url(request: Request) -> str:
    """The Redis URL, resolved in a worker thread (it may start the embedded server)."""
    return resolve_redis_url(context(request).settings)


ExistingJob = Annotated[JobRecord, Depends(existing_job)]


@router.post(
    "/jobs", status_code=status.HTTP_202_ACCEPTED, summary="Submit a job", max_body_size=MAX_SUBMIT_BODY_BYTES,
    responses={200: {"model": Submission, "description": "Nothing queued: the id was seen before, or the prompt "
                     "was blocked"}, 409: {"model": Problem, "description": "Another tenant's job has this id"},
               413: {"description": f"Body over {MAX_SUBMIT_BODY_BYTES} bytes"}},
)
def submit(
    spec: JobSpec, request: Request, response: Response, fingerprint: Caller, tenant: CallerTenant
) -> Submission:
    """Screen, record and queue a job; ``Location`` names its record.

    202 when it was queued. 200 with ``created`` false for an id submitted before (nothing is
    queued again), or with state ``blocked`` and the ``reason`` when the prompt is refused. 429
    when the token already has ``api_max_queued_jobs`` unfinished jobs, or the tenant is over a quota (with
    ``Retry-After``). 422 when the model catalog cannot
    serve it (an unknown model, or a size, step or frame count out of a model's reach), or when it asks
    for a priority above the tenant's ``max_priority``, with the reason. 409 when another tenant's job
    has its id. The job is the caller's tenant's, whatever ``tenant`` it names.
    """
    api = context(request)
    catalog = catalog_of(api.settings)
    try:
        spec = stamped(catalog.admit(spec), tenant)
    except (ModelRefused, PriorityNotAllowed) as refused:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(refused)) from None
    if api.status.tenant_of(spec.id) not in (None, owner(tenant)):
        raise HTTPException(status.HTTP_409_CONFLICT, "another tenant's job has this id; choose another")
    with within_tenant_quotas(request, tenant, [spec.id]), within_queued_jobs_cap(request, fingerprint, [spec.id]):
        submission = submit_job(api.broker, api.status, spec, policy=api.settings.safety_policy, catalog=catalog)
    if not submission.created and api.status.tenant_of(spec.id) != owner(tenant):  # taken meanwhile
        raise HTTPException(status.HTTP_409_CONFLICT, "another tenant's job has this id; choose another")
    if not (submission.created and submission.state == "queued"):
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = str(request.url_for("get_job", job_id=submission.job_id))
    return submission


@router.get("/jobs/{job_id}", summary="Read a job's record", responses=_NOT_FOUND)
def get_job(record: ExistingJob, request: Request) -> JobRecord:
    """State, stage, timings, attempts, artifacts, result URL and the spec as submitted; a queued
    job's place on its queue (``queue_position``: messages ahead of it, approximate)."""
    from workers.jobs.position import queue_position

    if record.state == "queued":
        position = queue_position(context(request).status, record.id)
        record.queue_position = position.ahead if position else None
    return record


@router.get(
    "/jobs/{job_id}/preview", summary="The newest preview of a job's image as it forms",
    response_class=Response, responses={**_NOT_FOUND, 200: {"content": {"image/png": {}}}},
)
def get_preview(record: ExistingJob, request: Request) -> Response:
    """A small PNG of the key image while the image stage runs (kept until the job expires); 404 before."""
    from workers.jobs.progress import preview_key

    api = context(request)
    png = api.broker.client.get(preview_key(api.status, record.id))  # the broker's client reads bytes
    if png is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no preview yet")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/jobs", summary="List jobs, newest first")
def list_jobs(
    request: Request, tenant: CallerTenant, state: JobState | None = None, kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobList:
    """The newest ``limit`` jobs (a tenant's own only), optionally only those in ``state`` or of ``kind``."""
    records = context(request).status.list_jobs(state=state, kind=kind.value if kind else None, limit=limit,
                                                tenant=tenant.id if tenant else None)
    return JobList(jobs=records)


@router.post(
    "/jobs/{job_id}/cancel", summary="Cancel a job",
    responses={**_NOT_FOUND, 409: {"model": Problem, "description": "The job has already finished"}},
)
def cancel_job(job_id: str, request: Request, tenant: CallerTenant) -> Cancelled:
    """Cancel a job that has not finished: it moves to ``cancelled`` and workers skip its messages."""
    store = context(request).status
    if not may_see(tenant, store.tenant_of(job_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    if store.cancel(job_id):
        return Cancelled(cancelled=True)
    state = store.state_of(job_id)
    if state is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    raise HTTPException(status.HTTP_409_CONFLICT, f"job already {state}")


@router.get(
    "/jobs/{job_id}/events", response_class=EventSourceResponse, summary="Follow a job's events (server-sent events)",
    responses=_NOT_FOUND, openapi_extra=_EVENTS_OPENAPI,
)
async def job_events(
    record: ExistingJob, url: Annotated[str, Depends(redis_url)], request: Request,
    last_event_id: Annotated[str | None, Header(pattern=r"^\d{1,20}-\d{1,20}$")] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Every event of the job from its creation (or after ``Last-Event-ID``), as it happens.

    One SSE event per stream entry: ``event:`` the state or note, ``data:`` a JSON ``JobEvent``,
    ``id:`` the stream id. The stream ends after the job's final event (succeeded, failed, blocked,
    cancelled); a ``: ping`` comment is sent every 15 s while nothing happens.
    """
    store = context(request).status
    after_id = last_event_id or f"{max(0, int((record.created_at - EVENTS_CLOCK_SKEW_S) * 1000))}-0"
    # redis-py's default socket timeout (5 s) would cut a blocked XREAD short: allow for the block.
    client = async_redis_client(url, decode_responses=True, socket_timeout=EVENTS_READ_BLOCK_MS / 1000 + 10)
    try:
        async for event in follow_job_events(client, store.events_key, store.job_key(record.id), record.id, after_id):
            yield ServerSentEvent(data=event, event=event.event, id=event.id or None)
    finally:
        with anyio.CancelScope(shield=True):  # also on disconnect, when this task is being cancelled
            await client.aclose()


#: What XREAD of one stream answers (RESP2, decoded): [(stream, [(entry id, fields), ...])].
_XReadReply = list[tuple[str, list[tuple[str, dict[str, str]]]]]


async def follow_job_events(
    client: aioredis.Redis, events_key: str, job_key: str, job_id: str, after_id: str
) -> AsyncIterator[JobEvent]:
    """The job's events in the stream after ``after_id``, waiting for new ones, up to its final one.

    When the record has finished but the stream holds no final event (trimmed, or written before
    ``after_id``), the last event is made from the record, so a follower always sees the end.
    """
    block_ms: int | None = None  # catch up without waiting first
    record_finished = False
    while True:
        reply = cast(_XReadReply, await client.xread({events_key: after_id}, count=EVENTS_READ_COUNT, block=block_ms))
        entries = reply[0][1] if reply else []
        for entry_id, fields in entries:
            after_id = entry_id
            if fields.get("job_id") == job_id:
                yield JobEvent.model_validate({**fields, "id": entry_id})
                if fields.get("event") in TERMINAL_STATES:
                    return
        if entries:
            continue
        fields_read = await client.hmget(job_key, ["state", "stage", "error", "updated_at"])
        state, stage, error, updated_at = cast("list[str | None]", fields_read)
        if record_finished and state:
            yield JobEvent(id="", job_id=job_id, event=state, at=float(updated_at or 0), stage=stage or "",
                           error=error or "")
            return
        if state is None:  # the record is gone: nothing more will happen
            return
        # A final state is written with its event in one step: read once more before making it up.
        record_finished = state in TERMINAL_STATES
        block_ms = None if record_finished else EVENTS_READ_BLOCK_MS
